"""Your own data without code: MarketFolder (Market1501 naming in any folder under the root)
and ListFiles ('<path> <person id> <camera id>' lines), on real files written here, and the
message of each bad input."""
import logging
import os

import pytest

from fastreid_ms.config import get_cfg
from fastreid_ms.data import DatasetLayoutError
from fastreid_ms.data.build import build_dataset
from fastreid_ms.data.datasets import ListFiles, MarketFolder

from _builders import market_name, write_image, write_three_splits

TRAIN = [market_name(p, c, n) for p in (3, 7, 9) for c, n in ((1, 0), (2, 1))]
QUERY = [market_name(p, 1, 5) for p in (11, 12)]
GALLERY = [market_name(p, c, 6) for p in (11, 12) for c in (2, 3)] + [market_name(0, 1, 9),
                                                                       market_name(-1, 2, 9)]


def _folder(root, name="my_people", **kwargs):
    return write_three_splits(os.path.join(root, name), TRAIN, kwargs.get("query", QUERY),
                              kwargs.get("gallery", GALLERY))


def test_market_folder_reads_any_folder_from_the_config(tmp_path):
    _folder(str(tmp_path))
    cfg = get_cfg()
    cfg.DATASETS.ROOT = str(tmp_path)
    cfg.DATASETS.FOLDER.NAME = "my_people"
    ds = build_dataset(cfg, "MarketFolder")
    assert ds.num_train_pids == 3 and len(ds.train) == 6
    assert sorted({p for _, p, _ in ds.train}) == [0, 1, 2]           # relabelled
    assert sorted((os.path.basename(p), pid, cam) for p, pid, cam in ds.query) == [
        (QUERY[0], 11, 0), (QUERY[1], 12, 0)]
    assert len(ds.gallery) == 5 and {p for _, p, _ in ds.gallery} == {0, 11, 12}  # junk left out
    # test-only folder, renamed splits
    write_three_splits(str(tmp_path / "eval_only"), [], QUERY, GALLERY)
    os.rename(tmp_path / "eval_only" / "bounding_box_test", tmp_path / "eval_only" / "gallery")
    ds = MarketFolder(root=str(tmp_path), name="eval_only",
                      split_dirs={"train": "", "gallery": "gallery"}, verbose=False)
    assert ds.train == [] and len(ds.query) == 2 and len(ds.gallery) == 5


def test_market_folder_errors(tmp_path, caplog):
    root = str(tmp_path)
    with pytest.raises(DatasetLayoutError, match="set DATASETS.FOLDER.NAME"):
        MarketFolder(root=root, name="")
    with pytest.raises(DatasetLayoutError, match="FOLDER.NAME does not exist") as err:
        MarketFolder(root=root, name="nowhere")
    assert os.path.join(root, "nowhere") in str(err.value) and "bounding_box_train/" in str(
        err.value)
    _folder(root)
    with pytest.raises(DatasetLayoutError, match="unknown split 'val'"):
        MarketFolder(root=root, name="my_people", split_dirs={"val": "x"})
    write_image(os.path.join(root, "my_people", "query", "holiday.jpg"))
    with pytest.raises(DatasetLayoutError, match="'holiday.jpg' does not parse"):
        MarketFolder(root=root, name="my_people")
    os.remove(os.path.join(root, "my_people", "query", "holiday.jpg"))
    write_image(os.path.join(root, "my_people", "query", market_name(40, 1)))
    with caplog.at_level(logging.WARNING, logger="fastreid_ms"):
        MarketFolder(root=root, name="my_people", verbose=False)
    assert "1 of 3 query identities (1 query images) have no image in the gallery (e.g. 40)" in \
        caplog.text
    _folder(root, "strangers", gallery=[market_name(50, 2)])
    with pytest.raises(DatasetLayoutError, match="2 of 2 query identities .*nothing can be "
                                                 "evaluated"):
        MarketFolder(root=root, name="strangers")


def _write_lists(root, lines):
    os.makedirs(os.path.join(root, "lists"), exist_ok=True)
    for split, rows in lines.items():
        with open(os.path.join(root, "lists", f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("".join(row + "\n" for row in rows))


def _list_tree(root):
    for rel in ("img/a/1.jpg", "img/a/2.png", "img/b/3.jpg", "img/b/4.jpg", "img/q/5.jpg",
                "img/q/6.jpg", "img/g/7.jpg", "img/g/8.jpg", "img/g/9.jpg"):
        write_image(os.path.join(root, rel))
    _write_lists(root, {
        "train": ["# my training images", "img/a/1.jpg 100 0", "img/a/2.png 100 1", "",
                  "img/b/3.jpg 205 0", "img/b/4.jpg 205 2"],
        "query": ["img/q/5.jpg 0 0", "img/q/6.jpg 1 1"],
        "gallery": ["img/g/7.jpg 0 1", "img/g/8.jpg 1 0", "img/g/9.jpg -1 0"]})


def test_list_files_read_from_the_config(tmp_path):
    root = str(tmp_path)
    _list_tree(root)
    cfg = get_cfg()
    cfg.DATASETS.ROOT = root
    cfg.DATASETS.LISTS.TRAIN = "lists/train.txt"
    cfg.DATASETS.LISTS.QUERY = "lists/query.txt"
    cfg.DATASETS.LISTS.GALLERY = os.path.join(root, "lists", "gallery.txt")   # absolute works
    ds = build_dataset(cfg, "ListFiles")
    assert ds.train == sorted([(os.path.join(root, "img/a/1.jpg"), 0, 0),
                               (os.path.join(root, "img/a/2.png"), 0, 1),
                               (os.path.join(root, "img/b/3.jpg"), 1, 0),
                               (os.path.join(root, "img/b/4.jpg"), 1, 2)])
    assert ds.query == [(os.path.join(root, "img/q/5.jpg"), 0, 0),
                        (os.path.join(root, "img/q/6.jpg"), 1, 1)]       # id 0 is a person here
    assert ds.gallery == [(os.path.join(root, "img/g/7.jpg"), 0, 1),
                          (os.path.join(root, "img/g/8.jpg"), 1, 0)]     # -1: junk, left out
    # image paths relative to another folder; no train list
    _write_lists(root, {"q2": ["q/5.jpg 0 0"], "g2": ["g/7.jpg 0 1"]})
    ds = ListFiles(root=root, image_root="img", verbose=False,
                   lists={"query": "lists/q2.txt", "gallery": "lists/g2.txt"})
    assert ds.train == [] and ds.query == [(os.path.join(root, "img", "q/5.jpg"), 0, 0)]


@pytest.mark.parametrize("lines,message", [
    (["img/q/5.jpg 0"], r"line 1 \('img/q/5.jpg 0'\) does not parse as '<image path> <person "
                        r"id> <camera id>'"),
    (["img/q/5.jpg 0 0", "img/q/6.jpg one 1"], "line 2 .* does not parse"),
    (["img/q/5.jpg 0 -3"], "line 1 .*camera id -3; expected ids >= -1 and cameras >= 0"),
    (["img/q/5.jpg 0 0", "img/q/nope.jpg 1 0"], r"1 image\(s\) listed in 'lists/query.txt' do not "
                                                r"exist \(first: line 2: .*nope.jpg\)"),
    (["# nothing", ""], "'lists/query.txt' lists no usable image"),
])
def test_list_file_errors(tmp_path, lines, message):
    root = str(tmp_path)
    _list_tree(root)
    _write_lists(root, {"query": lines})
    with pytest.raises(DatasetLayoutError, match=message) as err:
        ListFiles(root=root, lists={"query": "lists/query.txt", "gallery": "lists/gallery.txt"})
    assert os.path.join(root, "lists", "query.txt") in str(err.value)
    assert "<image path> <person id> <camera id>" in str(err.value)  # the expected layout


def test_list_file_split_and_identity_errors(tmp_path, caplog):
    root = str(tmp_path)
    _list_tree(root)
    with pytest.raises(DatasetLayoutError, match="the list file 'lists/missing.txt' is missing"):
        ListFiles(root=root, lists={"query": "lists/missing.txt", "gallery": "lists/gallery.txt"})
    with pytest.raises(DatasetLayoutError, match="unknown split 'val' .*train, query, gallery"):
        ListFiles(root=root, lists={"val": "lists/train.txt", "query": "lists/query.txt",
                                    "gallery": "lists/gallery.txt"})
    with pytest.raises(DatasetLayoutError, match="no gallery list given: set "
                                                 "DATASETS.LISTS.GALLERY"):
        ListFiles(root=root, lists={"query": "lists/query.txt"})
    _write_lists(root, {"query": ["img/q/5.jpg 0 0", "img/q/6.jpg 8 1", "img/q/6.jpg 9 1"]})
    with caplog.at_level(logging.WARNING, logger="fastreid_ms"):
        ListFiles(root=root, lists={"query": "lists/query.txt", "gallery": "lists/gallery.txt"},
                  verbose=False)
    assert "2 of 3 query identities (2 query images) have no image in the gallery (e.g. 8, 9)" \
        in caplog.text
    _write_lists(root, {"query": ["img/q/6.jpg 8 1"]})
    with pytest.raises(DatasetLayoutError, match="1 of 1 query identities"):
        ListFiles(root=root, lists={"query": "lists/query.txt", "gallery": "lists/gallery.txt"})
