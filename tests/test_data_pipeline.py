"""The fused input pipeline (issue 17): its pixels against Pillow and the reference
transforms, samples that depend only on (seed, epoch, rank, position) whatever the worker
count, unreadable files named through worker threads, the worker-count default."""
import logging
import re
import os
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from fastreid_ms.config import get_cfg
from fastreid_ms.data import ImageReadError, build_reid_test_loader, build_reid_train_loader
from fastreid_ms.data.build import ReidTestLoader, num_workers_from_config
from fastreid_ms.data.image_io import read_image
from fastreid_ms.data.loader import LOCAL_DEVICES_VAR, BatchMaker, default_num_workers, \
    iterate_batches
from fastreid_ms.data.transforms import Compose, ToCHW, ToFloat, build_transforms
from fastreid_ms.data.transforms import resample
from fastreid_ms.data.transforms.fused import FusedTransform, SampleDraw
from fastreid_ms.utils.threads import default_num_threads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "configs", "Market1501", "alignedpp_R50.yml")
ZEROS, ONES = np.zeros(3, np.float32), np.ones(3, np.float32)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _pil_resize(img, h, w):
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def _render_pixels(src, big, corner, out_hw, flip=False, shift=(0, 0), fill=0,
                   erase=(0, 0, 0, 0), value=(0.0, 0.0, 0.0)):
    """render_sample with mean 0 / std 1: the 8-bit pixel values, HWC float32."""
    out = np.empty((3,) + out_hw, np.float32)
    resample.render_sample(src, big, corner, flip, shift, fill, ZEROS, ONES,
                           np.asarray(erase, np.int32), np.asarray(value, np.float32), out)
    return out.transpose(1, 2, 0)


# ----------------------------------------------------------------------------- pixels
@pytest.mark.parametrize("src_hw,big_hw,out_hw", [
    ((128, 64), (288, 144), (256, 128)),   # Market1501 -> the seed's translation (1.125x)
    ((128, 64), (256, 128), (256, 128)),   # Market1501 -> the recipe's size
    ((37, 19), (80, 41), (64, 32)),        # odd sizes, non-integer factors
    ((20, 10), (20, 33), (20, 30)),        # one axis kept
])
def test_resize_window_is_pillows_bilinear_bit_for_bit(src_hw, big_hw, out_hw):
    src = _image(*src_hw, seed=sum(src_hw))
    big = _pil_resize(src, *big_hw)
    rng = np.random.default_rng(0)
    for _ in range(6):
        y0 = int(rng.integers(0, big_hw[0] - out_hw[0] + 1))
        x0 = int(rng.integers(0, big_hw[1] - out_hw[1] + 1))
        got = _render_pixels(src, big_hw, (y0, x0), out_hw)
        np.testing.assert_array_equal(got, big[y0:y0 + out_hw[0], x0:x0 + out_hw[1]])


def test_kernel_downscale_within_one_level_of_pillow():
    """The kernel's own downscale is Pillow's horizontal-first arithmetic; Pillow 13 may run
    the vertical pass first there (the fused transform lets Pillow shrink instead)."""
    src = _image(300, 140, seed=3)
    got = _render_pixels(src, (256, 128), (0, 0), (256, 128))
    diff = np.abs(got - _pil_resize(src, 256, 128))
    assert diff.max() <= 1


def test_given_parameters_flip_pad_and_erase_against_pillow_and_numpy():
    """For given random parameters: Pillow resize, crop, mirror, pad + crop, erase, written
    out with NumPy, equals the fused pass (pixel values, before normalisation)."""
    src = _image(128, 64, seed=7)
    big = _pil_resize(src, 288, 144)
    y0, x0, dy, dx = 20, 9, -3, 5
    window = big[y0:y0 + 256, x0:x0 + 128][:, ::-1]
    padded = np.pad(window, ((10, 10), (10, 10), (0, 0)), constant_values=17)
    expected = padded[10 + dy:10 + dy + 256, 10 + dx:10 + dx + 128].astype(np.float32)
    expected[40:40 + 70, 30:30 + 50] = (-1.0, 2.5, 300.0)
    got = _render_pixels(src, (288, 144), (y0, x0), (256, 128), flip=True, shift=(dy, dx),
                         fill=17, erase=(40, 30, 70, 50), value=(-1.0, 2.5, 300.0))
    np.testing.assert_array_equal(got, expected)


def _recipe(*overrides):
    cfg = get_cfg()
    cfg.merge_from_file(RECIPE)
    cfg.merge_from_list(list(overrides))
    return cfg


@pytest.mark.parametrize("overrides", [
    [],
    ["INPUT.REA.PROB", "1.0", "INPUT.TRANSLATE.PROB", "1.0"],
    ["INPUT.REA.MODE", "retry", "INPUT.PADDING.ENABLED", "True", "INPUT.PADDING.SIZE", "10"],
    ["INPUT.TRANSLATE.ENABLED", "False", "INPUT.REA.VALUE", "[0.5]"],
])
def test_fused_pipeline_equals_the_reference_transforms(overrides):
    """Same generator seed, same sample: the recipe's transforms (translation, flip, the
    seed's erasing after Normalize; or retry erasing with padding) and the test pipeline,
    on Market1501-sized images and on other sizes (shrinking ones included)."""
    cfg = _recipe(*overrides)
    sizes = [(128, 64)] * 6 + [(300, 140), (100, 50), (256, 128), (90, 200)]
    for is_train in (True, False):
        compose = build_transforms(cfg, is_train)
        fused = FusedTransform.from_compose(compose)
        assert fused is not None
        for seed, (h, w) in enumerate(sizes):
            img = _image(h, w, seed=seed)
            expected = compose(img, np.random.default_rng([seed, 1]))
            got = fused(img, np.random.default_rng([seed, 1]))
            assert got.shape == expected.shape == (3, 256, 128) and got.dtype == np.float32
            np.testing.assert_array_equal(got, expected)


def test_fused_draws_the_reference_parameters():
    cfg = _recipe("INPUT.REA.PROB", "1.0")
    fused = FusedTransform.from_compose(build_transforms(cfg, True))
    translate, erasing = fused.geometry, fused.erasing
    seen_flip, seen_big = set(), set()
    for seed in range(40):
        draw = fused.draw(np.random.default_rng(seed))
        rng = np.random.default_rng(seed)  # the Compose's order: translate, flip, erase
        assert (draw.big_size, draw.corner) == translate.draw(rng)
        assert draw.flip == fused.flip.draw(rng)
        assert draw.erase == (erasing.draw(rng, 256, 128) or (0, 0, 0, 0))
        seen_flip.add(draw.flip)
        seen_big.add(draw.big_size)
    assert seen_flip == {True, False} and seen_big == {(256, 128), (288, 144)}


def test_unknown_transform_is_not_fused_and_still_loads(synthetic_cfg):
    """A project's own step: the loader runs the Compose per sample (threads too)."""
    class Invert:
        def __call__(self, img, rng):
            return 255 - img
    compose = Compose([Invert(), ToFloat(), ToCHW()])
    assert FusedTransform.from_compose(compose) is None
    loader, _ = build_reid_test_loader(synthetic_cfg, "Synthetic")
    items = [loader.items[i] for i in loader.order]
    for workers in (0, 2):
        custom = ReidTestLoader(items, compose, 16, workers)
        images = np.concatenate([b[0].asnumpy() for b in custom])
        for i in (0, 7, len(items) - 1):
            expected = (255 - np.asarray(Image.open(items[i][0]).convert("RGB"))).astype(np.float32)
            np.testing.assert_array_equal(images[i], expected.transpose(2, 0, 1))


# ----------------------------------------------------------------------------- determinism
def _epoch(cfg, workers, epoch=1, rank=0, world_size=1):
    cfg = cfg.clone()
    cfg.DATALOADER.NUM_WORKERS = workers
    loader = build_reid_train_loader(cfg, rank=rank, world_size=world_size)
    loader.set_epoch(epoch)
    batches = [(b[0].asnumpy(), b[1].asnumpy()) for b in loader]
    return loader, np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_sample_is_a_function_of_seed_epoch_rank_position_whatever_the_workers(synthetic_cfg):
    cfg = synthetic_cfg
    cfg.SEED = 5
    cfg.INPUT.REA.PROB = 0.8  # most samples erased, translated half the time, flipped half
    loader, images0, pids0 = _epoch(cfg, 0)
    for workers in (1, 2):
        _, images, pids = _epoch(cfg, workers)
        np.testing.assert_array_equal(images, images0)
        np.testing.assert_array_equal(pids, pids0)
    # Position p of epoch 1 on rank 0 is the reference transforms with generator
    # (SEED, epoch, rank, p) on the file the sampler put there.
    reference = build_transforms(cfg, is_train=True)
    order = loader.epoch_indices(1)
    for p in range(0, len(order), 3):
        path = loader.items[order[p]][0]
        expected = reference(np.asarray(Image.open(path).convert("RGB")),
                             np.random.default_rng([5, 1, 0, p]))
        np.testing.assert_array_equal(images0[p], expected)
    # Another epoch, another rank: other draws.
    _, other_epoch, _ = _epoch(cfg, 2, epoch=2)
    assert not np.array_equal(other_epoch, images0)
    _, rank1, _ = _epoch(cfg, 1, rank=1, world_size=2)
    _, rank1_again, _ = _epoch(cfg, 0, rank=1, world_size=2)
    np.testing.assert_array_equal(rank1, rank1_again)


def test_stopping_early_leaves_no_worker_thread(synthetic_cfg):
    synthetic_cfg.DATALOADER.NUM_WORKERS = 2
    loader = build_reid_train_loader(synthetic_cfg, rank=0, world_size=1)
    before = threading.active_count()
    for _ in loader:
        break
    assert threading.active_count() == before
    assert not [t for t in threading.enumerate() if t.name.startswith("fastreid-data")]


def test_batches_come_in_order_with_the_consumer_helping():
    """1 worker on a machine with more cores: the waiting consumer makes chunks too; the
    batches still hold their own positions."""
    class Recorder(BatchMaker):
        def __init__(self):
            self.batch_size, self.splittable, self.num_batches = 8, True, 6
            self.threads = set()

        def new_batch(self, k):
            return np.full((8, 1), -1.0), np.zeros(8), np.zeros(8)

        def fill(self, batch, k, first, stop):
            self.threads.add(threading.current_thread().name)
            batch[0][first:stop, 0] = np.arange(k * 8 + first, k * 8 + stop)

    maker = Recorder()
    got = np.concatenate([b[0][:, 0] for b in iterate_batches(maker, 1)])
    np.testing.assert_array_equal(got, np.arange(48))
    if default_num_threads() > 1:
        assert threading.current_thread().name in maker.threads


# ----------------------------------------------------------------------------- errors
def _broken_files(folder):
    """(truncated JPEG, corrupt JPEG, text file, missing file) beside a good JPEG."""
    good = os.path.join(folder, "good.jpg")
    Image.fromarray(_image(128, 64)).save(good, quality=90)
    with open(good, "rb") as f:
        data = f.read()
    files = {"truncated": data[: len(data) // 3],
             "corrupt": data[:200] + bytes(range(256)) * 8,
             "text": b"this is not an image\n"}
    paths = []
    for name, content in files.items():
        path = os.path.join(folder, f"0001_c1s1_00000{len(paths)}_{name}.jpg")
        with open(path, "wb") as f:
            f.write(content)
        paths.append(path)
    paths.append(os.path.join(folder, "0001_c1s1_000009_missing.jpg"))
    return good, paths


def test_read_image_fast_decode_equals_pillow_and_names_broken_files(tmp_path, synthetic_root):
    good, broken = _broken_files(str(tmp_path))
    jpegs = [os.path.join(dp, f) for dp, _, fs in os.walk(synthetic_root) for f in fs
             if f.endswith(".jpg")][:40] + [good]
    gray = os.path.join(str(tmp_path), "gray.jpg")
    Image.fromarray(_image(40, 20)[..., 0]).save(gray, quality=85)
    png = os.path.join(str(tmp_path), "colour.png")
    Image.fromarray(_image(30, 15)).save(png)
    for path in jpegs + [gray, png]:
        expected = np.asarray(Image.open(path).convert("RGB"))
        got = read_image(path)
        assert got.dtype == np.uint8 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    for path in broken:
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        assert path in str(info.value) and "Cannot read image" in str(info.value)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_broken_files_named_through_the_loaders(synthetic_root, synthetic_cfg, tmp_path, workers):
    good, broken = _broken_files(str(tmp_path))
    cfg = synthetic_cfg
    for bad in broken:
        items = [(good, 1, 0)] * 5 + [(bad, 1, 0)] + [(good, 1, 0)] * 20
        loader = ReidTestLoader(items, build_transforms(cfg, is_train=False), 4, workers)
        with pytest.raises(ImageReadError) as info:
            for _ in loader:
                pass
        assert bad in str(info.value) and "Python Call Stack" not in str(info.value)
    # The train loader too (a copy of the dataset with one training image truncated).
    root = os.path.join(str(tmp_path), "copy")
    shutil.copytree(synthetic_root, root)
    cfg.DATASETS.ROOT = root
    cfg.DATALOADER.NUM_WORKERS = workers
    loader = build_reid_train_loader(cfg, rank=0, world_size=1)
    victim = loader.items[loader.epoch_indices(0)[9]][0]
    with open(victim, "r+b") as f:
        f.truncate(300)
    loader.set_epoch(0)
    with pytest.raises(ImageReadError, match=re.escape(victim)):
        for _ in loader:
            pass


# ----------------------------------------------------------------------------- worker count
def test_num_workers_default_from_cores_per_local_device(monkeypatch, caplog):
    monkeypatch.delenv(LOCAL_DEVICES_VAR, raising=False)
    monkeypatch.delenv("MSRUN_CPU_LIST", raising=False)
    monkeypatch.delenv("FASTREID_NUM_THREADS", raising=False)
    usable = len(os.sched_getaffinity(0))
    assert default_num_workers(1)[0] == usable
    assert default_num_workers(2)[0] == max(usable // 2, 1)
    assert default_num_workers(64)[0] == 1
    monkeypatch.setenv(LOCAL_DEVICES_VAR, "1")  # 64 ranks, one of them on this machine
    assert default_num_workers(64)[0] == usable
    monkeypatch.setenv(LOCAL_DEVICES_VAR, "two")
    with pytest.raises(ValueError, match=LOCAL_DEVICES_VAR):
        default_num_workers(8)
    monkeypatch.delenv(LOCAL_DEVICES_VAR)
    monkeypatch.setenv("MSRUN_CPU_LIST", "0-1")  # msrun --bind_core: affinity is the share
    assert default_num_workers(8)[0] == usable
    monkeypatch.delenv("MSRUN_CPU_LIST")
    monkeypatch.setenv("FASTREID_NUM_THREADS", "1")
    assert default_num_workers(1)[0] == 1
    monkeypatch.delenv("FASTREID_NUM_THREADS")

    cfg = get_cfg()
    assert cfg.DATALOADER.NUM_WORKERS == -1
    with caplog.at_level(logging.INFO, logger="fastreid_ms"):
        assert num_workers_from_config(cfg, world_size=1) == usable
        cfg.DATALOADER.NUM_WORKERS = 3
        assert num_workers_from_config(cfg, world_size=8) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"Data loader threads: {usable} (DATALOADER.NUM_WORKERS -1: {usable} usable CPU"
               in m for m in messages)
    assert "Data loader threads: 3 (DATALOADER.NUM_WORKERS)" in messages
    cfg.DATALOADER.NUM_WORKERS = -2
    with pytest.raises(ValueError, match="DATALOADER.NUM_WORKERS must be -1"):
        num_workers_from_config(cfg, world_size=1)


def test_fused_render_rejects_a_wrong_output_slot():
    fused = FusedTransform.from_compose(build_transforms(_recipe(), False))
    draw = SampleDraw((256, 128), (0, 0), False, (0, 0), (0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"\(3, 256, 128\)"):
        fused.render(_image(128, 64), draw, np.empty((3, 128, 64), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        resample.render_sample(_image(128, 64), (256, 128), (5, 0), False, (0, 0), 0, ZEROS,
                               ONES, np.zeros(4, np.int32), ZEROS,
                               np.empty((3, 256, 128), np.float32))
