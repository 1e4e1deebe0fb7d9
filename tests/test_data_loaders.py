"""Train and test loaders on mindspore.dataset: shapes, dtypes, order, completeness, errors."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import mindspore as ms

from fastreid_ms.config import get_cfg
from fastreid_ms.data import (DatasetLayoutError, ImageReadError, build_dataset,
                              build_reid_test_loader, build_reid_train_loader, read_image)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _plain(cfg):
    """No random train transforms: a batch can be recomputed from the files."""
    cfg.INPUT.TRANSLATE.ENABLED = False
    cfg.INPUT.FLIP.ENABLED = False
    cfg.INPUT.REA.ENABLED = False
    return cfg


def _expected_image(path, cfg, size):
    """Slow reference: PIL decode, bilinear resize, normalise, CHW."""
    img = Image.open(path).convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    arr = np.asarray(img, np.float32)
    arr = (arr - np.array(cfg.INPUT.PIXEL_MEAN, np.float32)) / np.array(cfg.INPUT.PIXEL_STD,
                                                                       np.float32)
    return arr.transpose(2, 0, 1)


def _collect(loader):
    return [(b[0].asnumpy(), b[1].asnumpy(), b[2].asnumpy()) for b in loader]


def test_train_loader_shapes_dtypes_and_pk_batches(synthetic_cfg):
    loader = build_reid_train_loader(synthetic_cfg, rank=0, world_size=1)
    assert loader.num_classes == 12
    assert loader.iters_per_epoch == len(loader) == 12 // 4  # 12 ids, 4 ids per batch
    n = 0
    for images, pids, camids in loader:
        n += 1
        assert isinstance(images, ms.Tensor) and isinstance(pids, ms.Tensor)
        assert images.shape == (8, 3, 64, 32) and images.dtype == ms.float32
        assert pids.shape == (8,) and pids.dtype == ms.int32
        assert camids.shape == (8,) and camids.dtype == ms.int32
        p = pids.asnumpy()
        assert len(set(p.tolist())) == 4 and all((p == q).sum() == 2 for q in set(p.tolist()))
        assert 0 <= p.min() and p.max() < 12 and 0 <= camids.asnumpy().min() < 6
        x = images.asnumpy()
        assert np.isfinite(x).all() and -2.2 < x.min() and x.max() < 2.7
    assert n == len(loader)


def test_train_images_match_files(synthetic_cfg):
    cfg = _plain(synthetic_cfg)
    loader = build_reid_train_loader(cfg, rank=0, world_size=1)
    loader.set_epoch(2)
    order = loader.epoch_indices(2)
    batches = _collect(loader)
    images = np.concatenate([b[0] for b in batches])
    pids = np.concatenate([b[1] for b in batches])
    assert len(order) == len(images)
    for pos, index in enumerate(order):
        path, pid, _ = loader.items[index]
        assert pids[pos] == pid
        if pos % 5 == 0:
            np.testing.assert_allclose(images[pos], _expected_image(path, cfg, (64, 32)),
                                       atol=1e-5)


def test_train_order_deterministic_per_epoch_and_advances(synthetic_cfg):
    a = build_reid_train_loader(synthetic_cfg, rank=0, world_size=1)
    b = build_reid_train_loader(synthetic_cfg, rank=0, world_size=1)
    a.set_epoch(3)
    b.set_epoch(3)
    ea, eb = _collect(a), _collect(b)
    for x, y in zip(ea, eb):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    next_epoch = _collect(a)  # iterating again moves on to epoch 4
    b.set_epoch(4)
    np.testing.assert_array_equal(next_epoch[0][1], _collect(b)[0][1])
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(ea, next_epoch))


def test_train_ranks_disjoint_and_local_batch(synthetic_cfg):
    synthetic_cfg.SOLVER.IMS_PER_BATCH = 8
    synthetic_cfg.DATALOADER.NUM_INSTANCE = 2
    per_rank = []
    for rank in range(2):
        loader = build_reid_train_loader(synthetic_cfg, rank=rank, world_size=2)
        assert len(loader) == 12 // 2 // 2  # 6 ids per rank, 2 ids per local batch
        batches = _collect(loader)
        assert all(b[0].shape == (4, 3, 64, 32) for b in batches)
        per_rank.append({int(p) for b in batches for p in b[1]})
    assert not per_rank[0] & per_rank[1]


def test_iters_per_epoch_longer_than_sampler(synthetic_cfg):
    synthetic_cfg.SOLVER.ITERS_PER_EPOCH = 5
    loader = build_reid_train_loader(synthetic_cfg, rank=0, world_size=1)
    batches = _collect(loader)
    assert len(loader) == len(batches) == 5
    assert all(len(set(b[1].tolist())) == 4 for b in batches)


def test_several_training_datasets_keep_ids_apart(synthetic_root, synthetic_cfg, tmp_path):
    from _builders import market_name, write_three_splits
    root = os.path.join(str(tmp_path), "root")
    shutil.copytree(synthetic_root, root)
    write_three_splits(os.path.join(root, "market1501"),
                       [market_name(pid, cam, pid * 10 + cam) for pid in (3, 5, 8, 9)
                        for cam in (1, 2)],
                       [market_name(1, 1)], [market_name(1, 2)])
    synthetic_cfg.DATASETS.ROOT = root
    synthetic_cfg.DATASETS.NAMES = ["Synthetic", "Market1501"]
    loader = build_reid_train_loader(synthetic_cfg, rank=0, world_size=1)
    assert loader.num_classes == 12 + 4
    pids = sorted({pid for _, pid, _ in loader.items})
    assert pids == list(range(16))
    market_pids = {pid for path, pid, _ in loader.items if "market1501" in path}
    assert market_pids == {12, 13, 14, 15}
    assert len(loader) == 16 // 4


def test_train_divisibility_error_from_config(synthetic_cfg):
    synthetic_cfg.SOLVER.IMS_PER_BATCH = 10
    synthetic_cfg.DATALOADER.NUM_INSTANCE = 4
    with pytest.raises(ValueError, match=r"SOLVER.IMS_PER_BATCH \(10\)"):
        build_reid_train_loader(synthetic_cfg, rank=0, world_size=1)


def test_worker_processes_give_same_batches(synthetic_cfg):
    one = build_reid_train_loader(synthetic_cfg, rank=0, world_size=1)
    synthetic_cfg.DATALOADER.NUM_WORKERS = 2
    two = build_reid_train_loader(synthetic_cfg, rank=0, world_size=1)
    for x, y in zip(_collect(one), _collect(two)):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


def test_test_loader_returns_every_sample_in_order(synthetic_cfg):
    synthetic_cfg.TEST.IMS_PER_BATCH = 16
    loader, num_query = build_reid_test_loader(synthetic_cfg, "Synthetic")
    dataset = build_dataset(synthetic_cfg, "Synthetic")
    items = dataset.query + dataset.gallery
    assert num_query == len(dataset.query) == 10
    assert loader.num_samples == len(items) == len(loader.img_paths)
    assert loader.num_samples % 16 != 0  # there is a partial last batch to keep
    assert len(loader) == -(-len(items) // 16)
    assert loader.img_paths == [p for p, _, _ in items]
    images, pids, camids = [], [], []
    for x, p, c in loader:
        assert isinstance(x, ms.Tensor) and x.dtype == ms.float32 and x.shape[1:] == (3, 64, 32)
        assert isinstance(p, np.ndarray) and p.dtype == np.int64 and c.dtype == np.int64
        images.append(x.asnumpy())
        pids.append(p)
        camids.append(c)
    assert [len(p) for p in pids][-1] == len(items) % 16
    np.testing.assert_array_equal(np.concatenate(pids), [pid for _, pid, _ in items])
    np.testing.assert_array_equal(np.concatenate(camids), [cam for _, _, cam in items])
    images = np.concatenate(images)
    for i in (0, num_query, len(items) - 1):
        np.testing.assert_allclose(images[i], _expected_image(items[i][0], synthetic_cfg,
                                                              (64, 32)), atol=1e-5)


def test_test_loader_sharded(synthetic_cfg):
    parts = [build_reid_test_loader(synthetic_cfg, "Synthetic", rank=r, world_size=3)[0]
             for r in range(3)]
    full, _ = build_reid_test_loader(synthetic_cfg, "Synthetic")
    assert sum((p.img_paths for p in parts), []) == full.img_paths


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_names_its_path(synthetic_root, synthetic_cfg, tmp_path, workers):
    root = os.path.join(str(tmp_path), "copy")
    shutil.copytree(synthetic_root, root)
    synthetic_cfg.DATASETS.ROOT = root
    synthetic_cfg.DATALOADER.NUM_WORKERS = workers
    loader, _ = build_reid_test_loader(synthetic_cfg, "Synthetic")
    bad = loader.img_paths[-3]
    with open(bad, "rb") as f:
        data = f.read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 3])  # a truncated JPEG
    with pytest.raises(ImageReadError) as info:
        for _ in loader:
            pass
    assert bad in str(info.value) and "Cannot read image" in str(info.value)
    assert "Python Call Stack" not in str(info.value)


def test_read_image_errors_name_the_file(tmp_path):
    missing = os.path.join(str(tmp_path), "0001_c1s1_000001_00.jpg")
    with pytest.raises(ImageReadError, match="0001_c1s1_000001_00.jpg"):
        read_image(missing)
    with open(missing, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(ImageReadError, match="Cannot read image"):
        read_image(missing)
    Image.fromarray(np.full((4, 2), 77, np.uint8)).save(missing)  # grey -> RGB
    out = read_image(missing)
    assert out.shape == (4, 2, 3) and out.dtype == np.uint8


def test_missing_dataset_fails_early_with_layout_error(tmp_path):
    cfg = get_cfg()
    cfg.DATASETS.ROOT = os.path.join(str(tmp_path), "no_datasets")
    with pytest.raises(DatasetLayoutError, match="Expected layout"):
        build_reid_train_loader(cfg, rank=0, world_size=1)
    with pytest.raises(DatasetLayoutError, match="no_datasets"):
        build_reid_test_loader(cfg, "Market1501")


def test_train_net_without_dataset_prints_clear_error(tmp_path):
    """tools/train_net.py on a Market1501 config with no dataset: the layout message, not
    a traceback from inside a loader."""
    tool = os.path.join(REPO, "tools", "train_net.py")
    if not os.path.isfile(tool):
        pytest.skip("tools/train_net.py is not in the tree yet")
    config = os.path.join(str(tmp_path), "market.yml")
    missing = os.path.join(str(tmp_path), "no_datasets")
    with open(config, "w", encoding="utf-8") as f:
        f.write("DATASETS:\n  NAMES: ['Market1501']\n  TESTS: ['Market1501']\n"
                f"  ROOT: '{missing}'\nOUTPUT_DIR: '{tmp_path}/out'\n")
    proc = subprocess.run([sys.executable, tool, "--config-file", config], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Expected layout" in output and missing in output
    assert "Traceback" not in output
