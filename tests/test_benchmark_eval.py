"""tools/benchmark_eval.py at a tiny scale: every pipeline runs in its own process, the tables
print, and our exact pipeline gives the seed pipeline's metrics."""
import numpy as np
import pytest

from _builders import load_script

bench = load_script("tools/benchmark_eval.py", "benchmark_eval_tool")


def test_synthetic_features_have_the_market_layout():
    data = bench.make_features(20, 90, 8, 3, [16], seed=1)
    n = 110
    assert data["global"].shape == (n, 2048) and data["local_16"].shape == (n, 8, 16)
    assert data["num_query"] == 20
    pids = data["pids"]
    assert (pids[:20] > 0).all()                                # queries: real identities
    assert (pids[20:] == 0).any() and (pids[20:] == -1).any()   # distractors and junk
    assert set(pids[:20]) <= set(pids[20:])                     # every query id in the gallery
    np.testing.assert_allclose(np.linalg.norm(data["local_16"], axis=2), 1.0, rtol=1e-5)
    assert (data["global"] >= 0).all()                          # post-ReLU


@pytest.mark.slow
def test_tiny_benchmark_runs_and_exact_equals_seed(tmp_path, capsys):
    out = tmp_path / "bench.txt"
    results = bench.main(["--scale", "0.02", "--local-dims", "16", "--candidates", "30",
                          "--prune-dim", "4", "--output", str(out)])
    assert len(results) == 1
    runs = results[0]["runs"]
    assert set(runs) == {"seed", "exact", "pruned", "candidate"} and all(runs.values())
    seed, exact, cand = runs["seed"], runs["exact"], runs["candidate"]
    pruned = runs["pruned"]
    assert pruned["prune"]["projection_rank"] == 4
    assert 0 < pruned["prune"]["fraction_computed"] <= 1
    for key, value in exact["metrics"].items():          # exact too (another kernel's rounding)
        assert pruned["metrics"][key] == pytest.approx(value, abs=2e-2), key
    for key, value in seed["metrics"].items():          # fractions; the seed's V is float16
        assert exact["metrics"][key] == pytest.approx(value, abs=1e-3), key
    for key in ("Rank-1", "Rank-5", "mAP"):             # candidate mode: plain metrics exact
        assert cand["metrics"][key] == pytest.approx(exact["metrics"][key], abs=1e-9), key
    for run in runs.values():
        assert set(run["times"]) == set(bench.STAGES) and run["peak_rss_mb"] > 0
    printed = capsys.readouterr().out
    assert "speed-up" in printed and "max |diff| vs seed" in printed
    assert "pairs with exact DMLI" in printed and "CPU:" in printed
    assert out.read_text().strip() == results[0]["text"].strip()


def _write_extracted(path, data, rows):
    np.savez(path, **{"global": data["global"][rows], "local": data["local_16"][rows],
                      "pids": data["pids"][rows], "camids": data["camids"][rows],
                      "paths": np.array([f"img{i}.jpg" for i in rows])})


def test_extracted_features_load_queries_first(tmp_path):
    data = bench.make_features(20, 90, 8, 3, [16], seed=2)
    q, g = tmp_path / "q.npz", tmp_path / "g.npz"
    _write_extracted(q, data, np.arange(20))
    _write_extracted(g, data, np.arange(20, 110))
    got = bench.load_extracted_features(str(q), str(g))
    assert got["num_query"] == 20
    for key in ("global", "local_16", "pids", "camids"):
        np.testing.assert_array_equal(got[key], data[key])
    np.savez(tmp_path / "bad.npz", **{"global": data["global"][:5]})   # no local features
    with pytest.raises(SystemExit, match="no local, pids, camids"):
        bench.load_extracted_features(str(tmp_path / "bad.npz"), str(g))
    with pytest.raises(SystemExit, match="does not exist"):
        bench.load_extracted_features(str(tmp_path / "missing.npz"), str(g))
