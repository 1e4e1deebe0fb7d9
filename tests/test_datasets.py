"""Dataset parsing on small trees in the real layouts, and the layout errors."""
import os
import shutil

import pytest

from _builders import (cuhk03_name, duke_name, market_name, write_image, write_msmt17,
                       write_three_splits)
from fastreid_ms.config import get_cfg
from fastreid_ms.data import build_dataset
from fastreid_ms.data.datasets import (CUHK03, DATASET_REGISTRY, MSMT17, DatasetLayoutError,
                                       DukeMTMC, Market1501)


def _ids(items):
    return sorted({pid for _, pid, _ in items})


def _cams(items):
    return sorted({cam for _, _, cam in items})


# Market1501: train ids 2, 7, 12 (cameras 1, 3, 6), a junk image in every split,
# query ids 5, 9; gallery ids 5, 9 plus two distractors (0) and two junk (-1).
MARKET_TRAIN = [market_name(7, 1, 1), market_name(2, 3, 2), market_name(2, 1, 3),
                market_name(12, 6, 4), market_name(7, 3, 5), market_name(-1, 2, 6)]
MARKET_QUERY = [market_name(5, 1, 7), market_name(9, 2, 8), market_name(-1, 2, 9)]
MARKET_GALLERY = [market_name(5, 4, 10), market_name(5, 5, 11), market_name(9, 6, 12),
                  market_name(0, 1, 13), market_name(0, 2, 14), market_name(-1, 3, 15),
                  market_name(-1, 4, 16)]


def _market(root, folder="Market-1501-v15.09.15"):
    base = write_three_splits(os.path.join(root, folder), MARKET_TRAIN, MARKET_QUERY,
                              MARKET_GALLERY)
    with open(os.path.join(base, "bounding_box_train", "Thumbs.db"), "wb") as f:
        f.write(b"not an image")  # non-image files are ignored, as in the real download
    return base


@pytest.mark.parametrize("folder", ["Market-1501-v15.09.15", "market1501",
                                    "market1501/Market-1501-v15.09.15"])
def test_market1501_counts_relabel_junk_distractors(tmp_path, folder):
    base = _market(str(tmp_path), folder)
    ds = Market1501(root=str(tmp_path), verbose=False)
    # Train: junk dropped, ids 2, 7, 12 relabelled 0, 1, 2 in sorted order.
    assert len(ds.train) == 5 and ds.num_train_pids == 3
    by_name = {os.path.basename(p): (pid, cam) for p, pid, cam in ds.train}
    assert by_name[market_name(2, 3, 2)] == (0, 2)
    assert by_name[market_name(7, 1, 1)] == (1, 0)
    assert by_name[market_name(12, 6, 4)] == (2, 5)
    assert _cams(ds.train) == [0, 2, 5]
    assert all(p.startswith(os.path.join(base, "bounding_box_train")) for p, _, _ in ds.train)
    # Query: original ids, junk dropped.
    assert _ids(ds.query) == [5, 9] and len(ds.query) == 2 and _cams(ds.query) == [0, 1]
    # Gallery: distractors kept with id 0, junk dropped.
    assert _ids(ds.gallery) == [0, 5, 9] and len(ds.gallery) == 5
    assert sum(pid == 0 for _, pid, _ in ds.gallery) == 2
    assert _cams(ds.gallery) == [0, 1, 3, 4, 5]
    assert all(os.path.isfile(p) for p, _, _ in ds.train + ds.query + ds.gallery)


def test_statistics_table_lists_ids_images_cameras(tmp_path):
    _market(str(tmp_path))
    table = Market1501(root=str(tmp_path), verbose=False).statistics_table()
    rows = {line.split("|")[1].strip(): [int(x) for x in line.split("|")[2:5]]
            for line in table.splitlines() if line.startswith("| ") and "subset" not in line}
    assert rows == {"train": [3, 5, 3], "query": [2, 2, 2], "gallery": [3, 5, 5]}


def test_distractors_not_in_train(tmp_path):
    base = _market(str(tmp_path))
    write_image(os.path.join(base, "bounding_box_train", market_name(0, 1, 99)))
    ds = Market1501(root=str(tmp_path), verbose=False)
    assert len(ds.train) == 5 and ds.num_train_pids == 3


def test_dukemtmc(tmp_path):
    train = [duke_name(1, 2, 46182), duke_name(1, 8, 46183), duke_name(4, 7, 1),
             duke_name(9, 1, 2), duke_name(9, 1, 3), duke_name(9, 5, 4)]
    query = [duke_name(5, 2, 5), duke_name(6, 3, 6)]
    gallery = [duke_name(5, 1, 7), duke_name(6, 8, 8), duke_name(3, 4, 9)]
    write_three_splits(os.path.join(str(tmp_path), "DukeMTMC-reID"), train, query, gallery)
    ds = DukeMTMC(root=str(tmp_path), verbose=False)
    assert (len(ds.train), ds.num_train_pids) == (6, 3)
    assert _ids(ds.train) == [0, 1, 2] and _cams(ds.train) == [0, 1, 4, 6, 7]
    counts = {pid: sum(p == pid for _, p, _ in ds.train) for pid in range(3)}
    assert counts == {0: 2, 1: 1, 2: 3}  # ids 1, 4, 9 in sorted order
    assert _ids(ds.query) == [5, 6] and _ids(ds.gallery) == [3, 5, 6]
    assert _cams(ds.gallery) == [0, 3, 7]


@pytest.mark.parametrize("version", ["MSMT17_V1", "MSMT17_V2"])
def test_msmt17_list_files(tmp_path, version):
    base = write_msmt17(str(tmp_path), version,
                        train=[(0, 1, 0), (0, 15, 1), (3, 2, 2)], val=[(5, 7, 3), (5, 7, 4)],
                        query=[(10, 3, 5), (11, 4, 6)],
                        gallery=[(10, 9, 7), (11, 10, 8), (12, 11, 9)])
    ds = MSMT17(root=str(tmp_path), verbose=False)
    # Train = list_train + list_val, ids 0, 3, 5 -> 0, 1, 2; cameras from the names, 0-based.
    assert (len(ds.train), ds.num_train_pids) == (5, 3)
    assert sorted((pid, cam) for _, pid, cam in ds.train) == [(0, 0), (0, 14), (1, 1),
                                                              (2, 6), (2, 6)]
    train_dir = "train" if version == "MSMT17_V1" else "mask_train_v2"
    assert all(p.startswith(os.path.join(base, train_dir)) and os.path.isfile(p)
               for p, _, _ in ds.train)
    assert sorted((pid, cam) for _, pid, cam in ds.query) == [(10, 2), (11, 3)]
    assert sorted((pid, cam) for _, pid, cam in ds.gallery) == [(10, 8), (11, 9), (12, 10)]


@pytest.mark.parametrize("labeled", [False, True])
def test_cuhk03_np_detected_and_labeled(tmp_path, labeled):
    root = str(tmp_path)
    # Different contents in the two folders, so the test sees which one was read.
    write_three_splits(os.path.join(root, "cuhk03-np", "detected"),
                       [cuhk03_name(1, 1, 1), cuhk03_name(1, 2, 2), cuhk03_name(3, 1, 3)],
                       [cuhk03_name(20, 1, 1)], [cuhk03_name(20, 2, 2)])
    write_three_splits(os.path.join(root, "cuhk03-np", "labeled"),
                       [cuhk03_name(1, 1, 1), cuhk03_name(2, 2, 2), cuhk03_name(3, 1, 3),
                        cuhk03_name(4, 2, 3)],
                       [cuhk03_name(20, 1, 1), cuhk03_name(21, 1, 1)],
                       [cuhk03_name(20, 2, 2), cuhk03_name(21, 2, 2)])
    cfg = get_cfg()
    cfg.DATASETS.ROOT = root
    cfg.DATASETS.CUHK03.LABELED = labeled
    ds = build_dataset(cfg, "CUHK03")
    assert isinstance(ds, CUHK03)
    expected = (4, 4, 2, 2) if labeled else (3, 2, 1, 1)
    assert (len(ds.train), ds.num_train_pids, len(ds.query), len(ds.gallery)) == expected
    kind = "labeled" if labeled else "detected"
    assert all(f"{os.sep}{kind}{os.sep}" in p for p, _, _ in ds.train + ds.query + ds.gallery)
    assert _cams(ds.train) == [0, 1]


def test_registry_has_every_dataset():
    for name in ("Market1501", "DukeMTMC", "MSMT17", "CUHK03", "Synthetic"):
        assert name in DATASET_REGISTRY


# ----------------------------------------------------------------------------- errors

def _layout_error(fn):
    with pytest.raises(DatasetLayoutError) as info:
        fn()
    message = str(info.value)
    assert "Expected layout" in message
    return message


def test_error_missing_root(tmp_path):
    missing = os.path.join(str(tmp_path), "nowhere")
    message = _layout_error(lambda: Market1501(root=missing, verbose=False))
    assert missing in message and "DATASETS.ROOT" in message
    assert "bounding_box_train" in message  # the expected tree is shown


def test_error_is_file_not_found_and_value_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        DukeMTMC(root=str(tmp_path), verbose=False)
    with pytest.raises(ValueError):
        MSMT17(root=str(tmp_path), verbose=False)


@pytest.mark.parametrize("cls", [Market1501, DukeMTMC, MSMT17, CUHK03])
def test_error_missing_dataset_folder(tmp_path, cls):
    message = _layout_error(lambda: cls(root=str(tmp_path), verbose=False))
    assert str(tmp_path) in message


@pytest.mark.parametrize("split", ["bounding_box_train", "query", "bounding_box_test"])
def test_error_missing_split(tmp_path, split):
    base = _market(str(tmp_path))
    shutil.rmtree(os.path.join(base, split))
    message = _layout_error(lambda: Market1501(root=str(tmp_path), verbose=False))
    assert os.path.join(base, split) in message and "missing" in message


def test_error_unparseable_name(tmp_path):
    base = _market(str(tmp_path))
    bad = write_image(os.path.join(base, "query", "person_one.jpg"))
    message = _layout_error(lambda: Market1501(root=str(tmp_path), verbose=False))
    assert bad in message and "does not parse" in message


def test_error_empty_split(tmp_path):
    base = _market(str(tmp_path))
    query = os.path.join(base, "query")
    shutil.rmtree(query)
    os.makedirs(query)
    write_image(os.path.join(query, market_name(-1, 1, 1)))  # only junk: nothing usable
    message = _layout_error(lambda: Market1501(root=str(tmp_path), verbose=False))
    assert query in message and "no usable images" in message


def test_error_camera_out_of_range(tmp_path):
    base = _market(str(tmp_path))
    bad = write_image(os.path.join(base, "bounding_box_test", market_name(5, 7, 1)))
    message = _layout_error(lambda: Market1501(root=str(tmp_path), verbose=False))
    assert bad in message and "camera 7" in message


def test_error_cuhk03_missing_kind(tmp_path):
    write_three_splits(os.path.join(str(tmp_path), "cuhk03-np", "detected"),
                       [cuhk03_name(1, 1, 1)], [cuhk03_name(2, 1, 1)], [cuhk03_name(2, 2, 1)])
    message = _layout_error(lambda: CUHK03(root=str(tmp_path), labeled=True, verbose=False))
    assert "labeled" in message


def test_error_msmt17_list_problems(tmp_path):
    base = write_msmt17(str(tmp_path), "MSMT17_V1", train=[(0, 1, 0)], val=[(1, 2, 1)],
                        query=[(5, 3, 2)], gallery=[(5, 4, 3)])
    os.remove(os.path.join(base, "list_gallery.txt"))
    message = _layout_error(lambda: MSMT17(root=str(tmp_path), verbose=False))
    assert os.path.join(base, "list_gallery.txt") in message
    with open(os.path.join(base, "list_gallery.txt"), "w", encoding="utf-8") as f:
        f.write("no_id_here.jpg\n")
    message = _layout_error(lambda: MSMT17(root=str(tmp_path), verbose=False))
    assert "line 1" in message and "list_gallery.txt" in message
    with open(os.path.join(base, "list_gallery.txt"), "w", encoding="utf-8") as f:
        f.write("0005/0005_000_04_0303morning_0009_0.jpg 5\n")  # not on disk
    message = _layout_error(lambda: MSMT17(root=str(tmp_path), verbose=False))
    assert "0005_000_04_0303morning_0009_0.jpg" in message and "does not exist" in message


def test_build_dataset_unknown_name_lists_known():
    with pytest.raises(KeyError) as info:
        build_dataset(get_cfg(), "Market1502")
    assert "Market1501" in str(info.value)
