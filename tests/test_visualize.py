"""tools/visualize_result.py end to end from feature files."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
import visualize_result as vis  # noqa: E402


def write_images(folder, pids, cams, rng):
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k, (p, c) in enumerate(zip(pids, cams)):
        path = os.path.join(folder, f"{p:04d}_c{c + 1}s1_{k:06d}_00.jpg")
        color = tuple(int(v) for v in rng.integers(0, 255, 3))
        Image.new("RGB", (16, 32), color).save(path)
        paths.append(path)
    return paths


def make_sets(tmp_path, with_local=True):
    rng = np.random.default_rng(0)
    num_ids = 6
    q_pids = np.arange(num_ids)
    q_cams = np.zeros(num_ids, dtype=np.int64)
    g_pids = np.repeat(np.arange(num_ids), 3)
    g_cams = np.tile([1, 2, 0], num_ids)           # one same-camera match each: left out
    centers = rng.normal(size=(num_ids, 8)) * 3
    spread = np.linspace(0.1, 2.5, num_ids)[:, None]  # some ids easy, some hard
    qf = centers[q_pids] + spread[q_pids] * rng.normal(size=(num_ids, 8))
    gf = centers[g_pids] + spread[g_pids] * rng.normal(size=(g_pids.size, 8))
    q_paths = write_images(str(tmp_path / "query"), q_pids, q_cams, rng)
    g_paths = write_images(str(tmp_path / "gallery"), g_pids, g_cams, rng)
    sets = []
    for name, f, paths, pids, cams in (("q", qf, q_paths, q_pids, q_cams),
                                       ("g", gf, g_paths, g_pids, g_cams)):
        arrays = {"global": f.astype(np.float32), "paths": np.asarray(paths, dtype=np.str_),
                  "pids": pids.astype(np.int64), "camids": cams.astype(np.int64)}
        if with_local:
            arrays["local"] = np.repeat(f[:, None, :], 3, axis=1).astype(np.float32)
        np.savez(str(tmp_path / f"{name}.npz"), **arrays)
        sets.append(arrays)
    return sets


def test_query_and_gallery_files_end_to_end(tmp_path):
    make_sets(tmp_path)
    out = tmp_path / "vis"
    written = vis.main(["--query-features", str(tmp_path / "q.npz"), "--gallery-features",
                        str(tmp_path / "g.npz"), "--output", str(out), "--topk", "4",
                        "--num-worst", "2", "--num-best", "2", "--num-random", "1"])
    assert len(written) == 5
    names = sorted(os.path.basename(p) for p in written)
    assert sum(n.startswith("worst_AP") for n in names) == 2
    assert sum(n.startswith("best_AP") for n in names) == 2
    assert sum(n.startswith("random") for n in names) == 1
    best = [p for p in written if os.path.basename(p).startswith("best_AP_1_")][0]
    img = Image.open(best).convert("RGB")
    # layout: margin 6, text 14, margin 6, caption 14 -> cells start at y = 40; 5 cells of 72 px
    assert img.size == (6 + 5 * (72 + 6) + 6, 6 + 14 + 6 + 14 + 136 + 6)
    first_cell_x = 6 + 1 * (72 + 6) + 6
    assert img.getpixel((first_cell_x + 1, 40 + 1)) == vis.GREEN   # best query: rank 1 correct
    query_border = img.getpixel((7, 41))
    assert query_border == (30, 80, 220)


def test_combined_file_and_missing_num_query(tmp_path):
    q, g = make_sets(tmp_path, with_local=False)
    combined = {k: np.concatenate([q[k], g[k]]) for k in q}
    combined["num_query"] = np.asarray(len(q["pids"]))
    np.savez(str(tmp_path / "all.npz"), **combined)
    written = vis.main(["--features", str(tmp_path / "all.npz"), "--output",
                        str(tmp_path / "v2"), "--num-worst", "1", "--num-best", "1",
                        "--num-random", "0", "TEST.METRIC", "cosine"])
    assert len(written) == 2 and all(os.path.isfile(p) for p in written)
    del combined["num_query"]
    np.savez(str(tmp_path / "nonq.npz"), **combined)
    with pytest.raises(ValueError, match="num_query"):
        vis.main(["--features", str(tmp_path / "nonq.npz"), "--output", str(tmp_path / "v3")])


def test_worst_query_is_the_lowest_ap_and_ignored_samples_are_hidden():
    ap = np.array([0.5, np.nan, 0.1, 0.9, 0.3])
    chosen = vis.choose_queries(ap, 2, 1, 5, seed=0)
    assert chosen[0] == ("worst AP #1 of 2", 2)
    assert chosen[1] == ("worst AP #2 of 2", 4)
    assert chosen[2] == ("best AP #1 of 1", 3)
    assert [q for _, q in chosen[3:]] == [0]        # the only remaining valid query
    dist = np.array([0.1, 0.2, 0.3, 0.4])
    top = vis.ranked_gallery(dist, 1, 0, np.array([1, -1, 2, 1]), np.array([0, 1, 1, 1]), 10)
    assert list(top) == [2, 3]                       # same id+camera and junk left out


def test_missing_key_is_named(tmp_path):
    np.savez(str(tmp_path / "bad.npz"), global_=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="global"):
        vis.load_npz(str(tmp_path / "bad.npz"))
    with pytest.raises(FileNotFoundError, match="extract_features"):
        vis.load_npz(str(tmp_path / "none.npz"))
