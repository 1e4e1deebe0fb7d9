"""The synthetic dataset: deterministic from a seed, Market layout, atomic creation."""
import os

import numpy as np
import pytest
from PIL import Image

from conftest import SMALL_SYNTHETIC
from fastreid_ms.data import synthetic_generator as gen
from fastreid_ms.data.datasets import Market1501, Synthetic
from _builders import load_script  # noqa: E402

TINY = dict(seed=3, num_train_ids=4, num_test_ids=3, images_per_id=6, num_cameras=3,
            height=32, width=16)


def _tree_bytes(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = (os.path.join(str(tmp_path), x) for x in "abc")
    gen.write_dataset(a, gen.SyntheticParams(**TINY))
    gen.write_dataset(b, gen.SyntheticParams(**TINY))
    gen.write_dataset(c, gen.SyntheticParams(**{**TINY, "seed": 4}))
    ta, tb, tc = _tree_bytes(a), _tree_bytes(b), _tree_bytes(c)
    assert ta == tb
    images = [k for k in ta if k.endswith(".jpg")]
    assert len(images) == 4 * 6 + 3 * 6 + 1 + 1  # ids x images + 1 distractor + 1 junk
    # Another seed: different camera assignments (names) and different pixels everywhere.
    assert sorted(k for k in tc if k.endswith(".jpg")) != sorted(images)
    assert not set(ta.values()) & set(tc.values())


def test_pixels_independent_of_drawing_order():
    params = gen.SyntheticParams(**TINY)
    plan = gen.plan_dataset(params)
    forward = [gen.render_planned(params, key, ident) for _, _, key, ident in plan]
    backward = [gen.render_planned(params, key, ident) for _, _, key, ident in reversed(plan)]
    for x, y in zip(forward, reversed(backward)):
        np.testing.assert_array_equal(x, y)
    assert forward[0].shape == (32, 16, 3) and forward[0].dtype == np.uint8


def test_layout_counts_junk_and_distractors(synthetic_root):
    s = SMALL_SYNTHETIC
    ds = Synthetic(root=synthetic_root, **{k.lower(): v for k, v in s.items()}, verbose=False)
    assert ds.num_train_pids == s["NUM_TRAIN_IDS"]
    assert len(ds.train) == s["NUM_TRAIN_IDS"] * s["IMAGES_PER_ID"]
    n_query = max(1, s["IMAGES_PER_ID"] // 6)
    assert len(ds.query) == s["NUM_TEST_IDS"] * n_query
    query_ids = {pid for _, pid, _ in ds.query}
    gallery_ids = {pid for _, pid, _ in ds.gallery}
    assert len(query_ids) == s["NUM_TEST_IDS"] and 0 in gallery_ids and -1 not in gallery_ids
    assert query_ids == gallery_ids - {0}
    assert min(query_ids) > s["NUM_TRAIN_IDS"]  # test ids disjoint from train ids
    folder = os.path.dirname(os.path.dirname(ds.train[0][0]))
    test_files = os.listdir(os.path.join(folder, "bounding_box_test"))
    assert any(n.startswith("-1_") for n in test_files)  # junk on disk, left out of the lists
    # Every query has a gallery image of its id in another camera.
    for _, pid, cam in ds.query:
        assert any(g_pid == pid and g_cam != cam for _, g_pid, g_cam in ds.gallery)
    # The folder also parses as Market1501 (same layout).
    as_market = Market1501.__new__(Market1501)
    as_market.dataset_dirs = (os.path.basename(folder),)
    Market1501.__init__(as_market, root=synthetic_root, verbose=False)
    assert len(as_market.gallery) == len(ds.gallery)
    width, height = Image.open(ds.query[0][0]).size
    assert (height, width) == (s["HEIGHT"], s["WIDTH"])
    assert {c for _, _, c in ds.train} == set(range(s["NUM_CAMERAS"]))


def test_created_once_and_reused(tmp_path):
    root = str(tmp_path)
    first = Synthetic(root=root, **TINY, verbose=False)
    folder = os.path.dirname(os.path.dirname(first.train[0][0]))
    assert os.path.basename(folder) == f"synthetic_reid_{gen.SyntheticParams(**TINY).digest()}"
    stamp = os.stat(os.path.join(folder, "synthetic.json")).st_mtime_ns
    second = Synthetic(root=root, **TINY, verbose=False)
    assert second.train == first.train
    assert os.stat(os.path.join(folder, "synthetic.json")).st_mtime_ns == stamp
    other = Synthetic(root=root, **{**TINY, "seed": 9}, verbose=False)
    assert os.path.dirname(os.path.dirname(other.train[0][0])) != folder
    assert not [n for n in os.listdir(root) if ".tmp-" in n]


def test_crash_leaves_no_half_dataset(tmp_path, monkeypatch):
    real_save = Image.Image.save
    calls = {"n": 0}

    def failing_save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise OSError("disk full")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        Synthetic(root=str(tmp_path), **TINY, verbose=False)
    assert os.listdir(str(tmp_path)) == []  # neither the final folder nor a temporary one
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert len(Synthetic(root=str(tmp_path), **TINY, verbose=False).train) == 24


def test_concurrent_creator_wins_race(tmp_path, monkeypatch):
    """Another rank finishes the same folder first: this one keeps it and cleans up."""
    params = gen.SyntheticParams(**TINY)
    final = os.path.join(str(tmp_path), "synthetic_reid_x")
    real_write = gen.write_dataset

    def write_then_lose_race(output_dir, p):
        n = real_write(output_dir, p)
        real_write(final, p)  # the other rank's complete copy appears now
        with open(os.path.join(final, "marker"), "w") as f:
            f.write("other rank")
        return n

    monkeypatch.setattr(gen, "write_dataset", write_then_lose_race)
    assert gen.write_dataset_atomic(final, params) is False
    assert os.path.isfile(os.path.join(final, "marker"))
    assert os.listdir(str(tmp_path)) == ["synthetic_reid_x"]


def test_vertical_shift_moves_parts():
    """The per-image box shift moves every part by the same number of rows."""
    person = gen.draw_identity(np.random.default_rng(0))
    a = np.zeros((64, 32, 3), np.float32)
    b = np.zeros((64, 32, 3), np.float32)
    gen.draw_person(a, person, top=0.0, height=56.0, centre=16.0, width=16.0)
    gen.draw_person(b, person, top=6.0, height=56.0, centre=16.0, width=16.0)
    np.testing.assert_array_equal(a[:-6], b[6:])
    assert np.abs(a[:-6] - b[:-6]).sum() > 0


def test_invalid_params_error():
    with pytest.raises(ValueError, match="images_per_id"):
        gen.SyntheticParams(images_per_id=1).validate()
    with pytest.raises(ValueError, match="num_cameras"):
        gen.SyntheticParams(num_cameras=12).validate()


def test_tool_writes_same_dataset(tmp_path):
    tool = load_script("tools/make_synthetic_dataset.py")
    out = os.path.join(str(tmp_path), "out")
    argv = ["--output", out, "--seed", "3", "--num-train-ids", "4", "--num-test-ids", "3",
            "--images-per-id", "6", "--cameras", "3", "--height", "32", "--width", "16"]
    assert tool.main(argv) == 0
    reference = os.path.join(str(tmp_path), "ref")
    gen.write_dataset(reference, gen.SyntheticParams(**TINY))
    assert _tree_bytes(out) == _tree_bytes(reference)
    assert tool.main(argv) == 2  # the output exists now: refused
