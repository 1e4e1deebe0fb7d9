"""Partial datasets (fastreid_ms/data/datasets/partial.py): the crops follow the paper's
gen_partial_dataset.py distribution (Monte Carlo against numpy's legacy randint with the
paper's arguments), are a function of (seed, image path under the root) only, identical
across processes and concurrent builders, and never touch the user's dataset folder."""
import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from fastreid_ms.config import get_cfg
from fastreid_ms.data.build import build_dataset
from fastreid_ms.data.datasets.partial import (PartialCropper, apply_partial, partial_base_name,
                                               partial_crop_box)

from _builders import REPO_ROOT

N_DRAWS = 12000


def paper_draws(height, n, seed=0):
    """The paper's draw, as its script writes it: randint(0.6 h, 0.9 h), then randint(0, h - ch)."""
    rs = np.random.RandomState(seed)
    heights = rs.randint(0.6 * height, height * 0.9, n)
    tops = rs.randint(0, height - heights)
    return heights, tops


@pytest.mark.parametrize("height", [128, 100])
def test_crop_distribution_matches_the_paper(height):
    boxes = np.array([partial_crop_box(height, 7, f"query/{i:05d}.jpg") for i in range(N_DRAWS)])
    tops, heights = boxes[:, 0], boxes[:, 1]
    ref_heights, ref_tops = paper_draws(height, N_DRAWS)
    # same support: crop heights [floor(0.6 h), floor(0.9 h)), tops [0, h - ch)
    assert set(heights) == set(ref_heights) == set(range(int(0.6 * height), int(0.9 * height)))
    assert (tops >= 0).all()
    assert (tops < height - heights).all()
    # uniform crop heights: every value's frequency near 1 / k (4.5 sigma), and the same
    # histogram as the paper's draws (total variation)
    k = len(set(ref_heights))
    counts = np.bincount(heights - heights.min(), minlength=k)
    sigma = np.sqrt(N_DRAWS * (1 / k) * (1 - 1 / k))
    assert np.abs(counts - N_DRAWS / k).max() < 4.5 * sigma
    ref_counts = np.bincount(ref_heights - ref_heights.min(), minlength=k)
    assert 0.5 * np.abs(counts - ref_counts).sum() / N_DRAWS < 0.04
    # tops uniform given the height: (top + 0.5) / (h - ch) is uniform on (0, 1)
    u = (tops + 0.5) / (height - heights)
    u_ref = (ref_tops + 0.5) / (height - ref_heights)
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.mean() - u_ref.mean()) < 0.015
    assert abs(np.mean(u < 0.25) - np.mean(u_ref < 0.25)) < 0.015
    # the kept fraction of the height spans [0.6, 0.9) with mean 0.75 as the paper's
    assert abs((heights / height).mean() - (ref_heights / height).mean()) < 0.005
    assert (tops == 0).any() and (tops == height - heights - 1).any()


def test_box_is_a_function_of_seed_and_path_only():
    a = [partial_crop_box(128, 0, f"q/{i}.jpg") for i in range(50)]
    np.random.seed(123)  # global numpy state plays no part
    assert [partial_crop_box(128, 0, f"q/{i}.jpg") for i in range(50)] == a
    assert [partial_crop_box(128, 1, f"q/{i}.jpg") for i in range(50)] != a
    # another process with another hash seed gives the same boxes
    code = ("from fastreid_ms.data.datasets.partial import partial_crop_box as b; "
            "print([b(128, 0, f'q/{i}.jpg') for i in range(50)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONHASHSEED": "12345"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(a)
    with pytest.raises(ValueError, match="HEIGHT_RANGE"):
        partial_crop_box(1, 0, "x", 0.6, 0.9)


def _tree_digest(folder):
    h = hashlib.sha256()
    for base, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(base, name)
            h.update(path.encode())
            with open(path, "rb") as f:
                h.update(f.read())
            h.update(str(os.stat(path).st_mtime_ns).encode())
    return h.hexdigest()


def _partial_cfg(synthetic_cfg, cache_dir):
    cfg = synthetic_cfg.clone()
    cfg.DATASETS.PARTIAL.CACHE_DIR = str(cache_dir)
    return cfg


def test_partial_dataset_crops_queries_only_and_leaves_the_dataset_alone(synthetic_cfg,
                                                                          tmp_path):
    assert partial_base_name("Market1501-Partial") == "Market1501"
    assert partial_base_name("Market1501") is None
    before = _tree_digest(synthetic_cfg.DATASETS.ROOT)
    full = build_dataset(synthetic_cfg, "Synthetic")
    cfg = _partial_cfg(synthetic_cfg, tmp_path / "cache")
    part = build_dataset(cfg, "Synthetic-Partial")
    assert _tree_digest(synthetic_cfg.DATASETS.ROOT) == before  # nothing written or changed
    assert part.gallery == full.gallery and part.train == full.train
    assert [(p, c) for _, p, c in part.query] == [(p, c) for _, p, c in full.query]
    cropper = PartialCropper(cfg.DATASETS.ROOT, str(tmp_path / "unused"))
    for (src, _, _), (dst, _, _) in zip(full.query, part.query):
        assert dst.startswith(str(tmp_path / "cache")) and dst.endswith(".png")
        with Image.open(src) as img:
            img = img.convert("RGB")
            top, ch = cropper.box(src, img.size[1])
            # the slow reference: rows top..top+ch-1 by explicit slicing, resized back
            rows = np.asarray(img)[top:top + ch]
            expected = np.asarray(Image.fromarray(rows).resize(img.size, Image.BILINEAR))
        got = np.asarray(Image.open(dst))
        assert got.shape == np.asarray(img).shape and np.array_equal(got, expected)
    # the default cache is OUTPUT_DIR/cache/partial
    cfg2 = synthetic_cfg.clone()
    cfg2.OUTPUT_DIR = str(tmp_path / "out")
    part2 = build_dataset(cfg2, "Synthetic-Partial")
    assert part2.query[0][0].startswith(str(tmp_path / "out" / "cache" / "partial"))


def test_crops_identical_across_runs_and_concurrent_ranks(synthetic_cfg, tmp_path):
    """Two 'ranks' building into one cache at once, and a later run into another cache,
    write byte-identical images; a rebuild reuses the cache."""
    cfg_a = _partial_cfg(synthetic_cfg, tmp_path / "shared")
    cfg_b = _partial_cfg(synthetic_cfg, tmp_path / "other")
    with ThreadPoolExecutor(2) as pool:
        r0, r1 = pool.map(lambda c: build_dataset(c, "Synthetic-Partial"), [cfg_a, cfg_a])
    later = build_dataset(cfg_b, "Synthetic-Partial")
    assert r0.query == r1.query
    for (a, _, _), (b, _, _) in zip(r0.query, later.query):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read()
    mtimes = [os.stat(p).st_mtime_ns for p, _, _ in r0.query]
    again = build_dataset(cfg_a, "Synthetic-Partial")
    assert [os.stat(p).st_mtime_ns for p, _, _ in again.query] == mtimes
    leftovers = [n for _, _, files in os.walk(tmp_path) for n in files if n.startswith(".")]
    assert leftovers == []


def test_partial_errors(synthetic_cfg, tmp_path):
    root = synthetic_cfg.DATASETS.ROOT
    with pytest.raises(ValueError, match="lies inside DATASETS.ROOT"):
        PartialCropper(root, os.path.join(root, "cache"))
    with pytest.raises(ValueError, match="0 < low < high <= 1"):
        PartialCropper(root, str(tmp_path), low=0.9, high=0.6)
    cfg = _partial_cfg(synthetic_cfg, tmp_path / "c")
    cfg.DATASETS.PARTIAL.SPLITS = ["querry"]
    with pytest.raises(ValueError, match="SPLITS must name some of .*'querry'"):
        build_dataset(cfg, "Synthetic-Partial")
    with pytest.raises(KeyError, match="No object named 'Nope'"):
        build_dataset(cfg, "Nope-Partial")
    assert "PARTIAL" in get_cfg().DATASETS and apply_partial  # the keys exist by default
