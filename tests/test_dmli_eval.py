"""DMLI distance (brute-force path search, blocked == unblocked) and AlignedReIDEvaluator."""
import itertools

import numpy as np
import pytest

import projects.AlignedReIDpp.alignedreidpp  # noqa: F401  (registers keys and the evaluator)
from fastreid_ms.config import get_cfg
from fastreid_ms.evaluation import build_evaluator, evaluate_rank, re_ranking
from fastreid_ms.evaluation.distance import compute_distance, normalize
from projects.AlignedReIDpp.alignedreidpp import dmli_numba
from projects.AlignedReIDpp.alignedreidpp.dmli import (default_kernel, dmli_distance,
                                                       dmli_distance_symmetric, dmli_pairs,
                                                       dmli_rows)
from _builders import slow_rank  # noqa: E402

needs_numba = pytest.mark.skipif(not dmli_numba.AVAILABLE,
                                 reason="numba is not installed (the numpy kernel is used)")
KERNELS = ["numpy", pytest.param("numba", marks=needs_numba)]


def brute_force_dmli(a, b, aligned=True):
    """Every right/down path from (0, 0) to (m-1, n-1), enumerated; float64."""
    m, n = a.shape[0], b.shape[0]
    d = np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))
    cost = (np.exp(d) - 1.0) / (np.exp(d) + 1.0)
    if not aligned:
        return float(np.trace(cost))
    best = np.inf
    for downs in itertools.combinations(range(m + n - 2), m - 1):
        i = j = 0
        total = cost[0, 0]
        for step in range(m + n - 2):
            if step in downs:
                i += 1
            else:
                j += 1
            total += cost[i, j]
        best = min(best, total)
    return best


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("m,n", [(1, 1), (2, 2), (3, 3), (4, 4), (6, 6), (3, 5), (5, 2)])
def test_dmli_matches_brute_force(m, n, kernel):
    rng = np.random.default_rng(m * 7 + n)
    x = rng.normal(size=(5, m, 6)).astype(np.float32)
    y = rng.normal(size=(4, n, 6)).astype(np.float32) * 0.5
    ours = dmli_distance(x, y, num_threads=1, kernel=kernel)
    assert ours.shape == (5, 4) and ours.dtype == np.float32
    ref = np.array([[brute_force_dmli(a, b) for b in y] for a in x])
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    ii, jj = np.meshgrid(np.arange(5), np.arange(4), indexing="ij")
    pairs = dmli_pairs(x, y, ii.ravel(), jj.ravel(), kernel=kernel, num_threads=2, chunk=3)
    np.testing.assert_allclose(pairs, ref.ravel(), rtol=1e-5, atol=1e-5)
    if m == n:
        ours_u = dmli_distance(x, y, aligned=False, num_threads=1, kernel=kernel)
        ref_u = np.array([[brute_force_dmli(a, b, aligned=False) for b in y] for a in x])
        np.testing.assert_allclose(ours_u, ref_u, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_blocked_threaded_pairs_rows_equal_unblocked(kernel):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 8, 16)).astype(np.float32)
    y = rng.normal(size=(53, 8, 16)).astype(np.float32)
    full = dmli_distance(x, y, block_size=10_000, num_threads=1)
    for bs, threads in [(1, 2), (5, 2), (16, 1)]:
        np.testing.assert_allclose(dmli_distance(x, y, block_size=bs, num_threads=threads), full,
                                   rtol=1e-6, atol=1e-6)
    i = rng.integers(0, 37, 200)
    j = rng.integers(0, 53, 200)
    np.testing.assert_allclose(dmli_pairs(x, y, i, j, chunk=17, kernel=kernel), full[i, j],
                               rtol=1e-5, atol=1e-5)
    cand = rng.integers(0, 53, (37, 9))
    np.testing.assert_allclose(dmli_rows(x, y, cand, max_elements=100, kernel=kernel),
                               full[np.arange(37)[:, None], cand], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_symmetric_equals_full_off_diagonal(kernel):
    rng = np.random.default_rng(1)
    y = normalize(rng.normal(size=(45 * 6, 12))).reshape(45, 6, 12)
    sym = dmli_distance_symmetric(y, block_size=4, num_threads=2, kernel=kernel)
    full = dmli_distance(y, y, num_threads=1, kernel=kernel)
    assert np.array_equal(sym, sym.T)
    # Self pairs have part distances sqrt(rounding noise): compare them loosely.
    off = ~np.eye(45, dtype=bool)
    np.testing.assert_allclose(sym[off], full[off], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.diag(sym), np.diag(full), atol=5e-3)


def test_dmli_errors():
    with pytest.raises(ValueError, match="same number of parts"):
        dmli_distance(np.zeros((2, 3, 4)), np.zeros((2, 4, 4)), aligned=False)
    with pytest.raises(ValueError, match=r"\(N, P, C\)"):
        dmli_distance(np.zeros((2, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="kernel must be 'numba', 'numpy'"):
        dmli_distance(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), kernel="cuda")


def test_kernel_from_environment(monkeypatch):
    x, y = np.random.default_rng(3).normal(size=(2, 4, 3, 5)).astype(np.float32)
    ref = dmli_distance(x, y, kernel="numpy")
    monkeypatch.setenv("FASTREID_DMLI_KERNEL", "numpy")
    np.testing.assert_array_equal(dmli_distance(x, y), ref)
    monkeypatch.setenv("FASTREID_DMLI_KERNEL", "fortran")
    with pytest.raises(ValueError, match="FASTREID_DMLI_KERNEL.*'fortran'"):
        dmli_distance(x, y)
    if dmli_numba.AVAILABLE:
        monkeypatch.setenv("FASTREID_DMLI_KERNEL", "numba")
        np.testing.assert_allclose(dmli_distance(x, y), ref, rtol=1e-5, atol=1e-5)
        monkeypatch.delenv("FASTREID_DMLI_KERNEL")
        assert default_kernel() == "numba"  # numba installed: the compiled kernel by default


@needs_numba
def test_numba_tanh_sqrt_accuracy():
    v = np.concatenate([np.linspace(0.0, 12.0, 50001) ** 2,
                        [-1e-6, -0.0, 1e-12, 1e-8, 80.0 ** 2, 1e30, np.inf]]).astype(np.float32)
    out = np.empty_like(v)
    dmli_numba.tanh_sqrt(v, out)
    ref = np.tanh(np.sqrt(np.maximum(v.astype(np.float64), 0.0)))
    np.testing.assert_allclose(out, ref, rtol=0, atol=3e-7)
    assert out[0] == 0.0 and out[-7] == 0.0 and out[-6] == 0.0     # zero, clamped negatives


@needs_numba
def test_bound_tanh_sqrt_stays_within_its_allowance_of_the_exact_kernels():
    """The bounds kernel's rational tanh: within BOUND_COST_ERROR of the exact kernels' cost
    on a dense grid of x = sqrt(v) in [0, 12] (the clamp at 4.97 inside), at the extremes, and
    far above (saturated); the allowance is not far above the real error (a fit, not a guess)."""
    v = np.concatenate([np.linspace(0.0, 12.0, 2_000_001) ** 2,
                        [-1e-6, -0.0, 1e-30, 1e-12, 1e-8, 80.0 ** 2, 1e30, np.inf]])
    v = v.astype(np.float32)
    cheap, exact = np.empty_like(v), np.empty_like(v)
    dmli_numba.bound_tanh_sqrt(v, cheap)
    dmli_numba.tanh_sqrt(v, exact)
    error = np.abs(cheap.astype(np.float64) - exact)
    assert error.max() <= dmli_numba.BOUND_COST_ERROR
    assert error.max() > 0.5 * dmli_numba.BOUND_COST_ERROR
    assert cheap[-8] == 0.0 and cheap[-7] == 0.0 and 0.0 <= cheap.min() and cheap.max() <= 1.0


@needs_numba
@pytest.mark.parametrize("aligned", [True, False])
def test_numba_kernel_equals_numpy_kernel(aligned):
    """Several column blocks (block_size=3 rows -> columns per block from the cell budget),
    ragged last blocks, two threads, and the symmetric path."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(29, 8, 32)).astype(np.float32) * 0.3
    y = rng.normal(size=(3000, 8, 32)).astype(np.float32) * 0.3
    a = dmli_distance(x, y, aligned=aligned, block_size=3, num_threads=2, kernel="numpy")
    b = dmli_distance(x, y, aligned=aligned, block_size=3, num_threads=2, kernel="numba")
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    ys = y[:300]
    sym_a = dmli_distance_symmetric(ys, aligned=aligned, block_size=7, kernel="numpy")
    sym_b = dmli_distance_symmetric(ys, aligned=aligned, block_size=7, kernel="numba")
    assert np.array_equal(sym_b, sym_b.T)
    off = ~np.eye(300, dtype=bool)
    np.testing.assert_allclose(sym_b[off], sym_a[off], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- evaluator
def make_parts(seed=0, num_ids=16, per_id=5, parts=4, dim=8, junk=2):
    rng = np.random.default_rng(seed)
    proto = rng.normal(size=(num_ids, parts + 2, dim))
    pids = np.repeat(np.arange(num_ids), per_id)
    cams = np.tile(np.arange(per_id), num_ids)
    shift = rng.integers(0, 3, pids.size)               # misaligned crops
    local = np.stack([proto[p, s:s + parts] for p, s in zip(pids, shift)])
    local = local + 0.6 * rng.normal(size=local.shape)
    glob = local.mean(axis=1) @ rng.normal(size=(dim, 20)) + 0.5 * rng.normal(size=(pids.size, 20))
    q = cams == 0
    order = np.concatenate([np.nonzero(q)[0], np.nonzero(~q)[0]])
    local, glob, pids, cams = local[order], glob[order], pids[order], cams[order]
    if junk:
        local = np.concatenate([local, rng.normal(size=(junk, parts, dim))])
        glob = np.concatenate([glob, rng.normal(size=(junk, 20))])
        pids = np.concatenate([pids, -np.ones(junk, dtype=np.int64)])
        cams = np.concatenate([cams, np.zeros(junk, dtype=np.int64)])
    local = local / np.linalg.norm(local, axis=2, keepdims=True)
    return ({"global": glob.astype(np.float32), "local": local.astype(np.float32)}, pids, cams,
            int(q.sum()))


def evaluate(cfg, feats, pids, cams, nq, batch=9):
    ev = build_evaluator(cfg, nq)
    ev.reset()
    for s in range(0, len(pids), batch):
        ev.process({k: v[s:s + batch] for k, v in feats.items()}, pids[s:s + batch],
                   cams[s:s + batch])
    return ev.evaluate(), ev


def aligned_cfg(distance, rerank=False, candidates=0, aligned=True):
    cfg = get_cfg()
    cfg.TEST.EVALUATOR = "AlignedReIDEvaluator"
    cfg.TEST.DISTANCE = distance
    cfg.TEST.METRIC = "euclidean"
    cfg.TEST.PROTOCOL = "market"
    cfg.TEST.AQE.ENABLED = False
    cfg.TEST.RERANK.LAMBDA = 0.3
    cfg.TEST.LOCAL.ALIGNED = aligned
    cfg.TEST.RERANK.ENABLED = rerank
    cfg.TEST.RERANK.K1 = 6
    cfg.TEST.RERANK.K2 = 3
    cfg.TEST.RERANK.CANDIDATES = candidates
    cfg.TEST.BLOCK_SIZE = 13
    return cfg


def seed_like_distances(feats, pids, nq, aligned=True):
    keep = pids != -1
    x = normalize(feats["global"][keep])
    local = feats["local"][keep]
    glob = compute_distance(x, x)
    loc = dmli_distance(local, local, aligned=aligned, num_threads=1)
    return glob, loc, keep


@pytest.mark.parametrize("aligned", [True, False])
def test_distance_variants_are_consistent(aligned):
    feats, pids, cams, nq = make_parts()
    glob, loc, keep = seed_like_distances(feats, pids, nq, aligned)
    p, c = pids[keep], cams[keep]
    results = {}
    for mode, dist in (("global", glob), ("local", loc), ("global_local", glob + loc)):
        res, ev = evaluate(aligned_cfg(mode, aligned=aligned), feats, pids, cams, nq)
        cmc, mAP, mINP = slow_rank(dist[:nq, nq:], p[:nq], p[nq:], c[:nq], c[nq:], 20)
        assert res["mAP"] == pytest.approx(mAP * 100, abs=1e-4), mode
        for r in (1, 5, 10, 20):
            assert res[f"Rank-{r}"] == pytest.approx(cmc[r - 1] * 100, abs=1e-4), (mode, r)
        assert res["mINP"] == pytest.approx(mINP * 100, abs=1e-4), mode
        assert not any(k.startswith("RK") for k in res)
        results[mode] = res
    # TEST.DISTANCE picks the distance: the three modes rank differently on this data
    maps = [results[m]["mAP"] for m in ("global", "local", "global_local")]
    assert min(abs(a - b) for a, b in itertools.combinations(maps, 2)) > 1.0, maps


@pytest.mark.parametrize("mode", ["global", "local", "global_local"])
def test_exact_rerank_matches_seed_pipeline(mode):
    feats, pids, cams, nq = make_parts(seed=2)
    glob, loc, keep = seed_like_distances(feats, pids, nq)
    p, c = pids[keep], cams[keep]
    original = {"global": glob, "local": loc, "global_local": glob + loc}[mode]
    ref = re_ranking(original[:nq, nq:], original[:nq, :nq], original[nq:, nq:], k1=6, k2=3,
                     lambda_value=0.3)
    cmc, mAP, mINP = evaluate_rank(ref, p[:nq], p[nq:], c[:nq], c[nq:])
    res, _ = evaluate(aligned_cfg(mode, rerank=True), feats, pids, cams, nq)
    assert res["RK mAP"] == pytest.approx(mAP * 100, abs=1e-3)
    assert res["RK Rank-1"] == pytest.approx(cmc[0] * 100, abs=1e-3)
    assert res["RK mINP"] == pytest.approx(mINP * 100, abs=1e-3)
    assert [k for k in res if k.startswith("RK ")] == ["RK Rank-1", "RK Rank-5", "RK Rank-10",
                                                        "RK Rank-20", "RK mAP", "RK mINP"]


@pytest.mark.parametrize("mode", ["local", "global_local"])
def test_candidate_mode_with_all_candidates_is_exact(mode):
    """With as many candidates as samples nothing is approximated."""
    feats, pids, cams, nq = make_parts(seed=3, num_ids=10, per_id=4)
    exact, _ = evaluate(aligned_cfg(mode, rerank=True), feats, pids, cams, nq)
    cand, _ = evaluate(aligned_cfg(mode, rerank=True, candidates=10_000), feats, pids, cams, nq)
    for key in exact:
        assert cand[key] == pytest.approx(exact[key], abs=1e-3), key


@pytest.mark.parametrize("candidates", [1, 40])
def test_candidate_mode_close_to_exact(candidates, monkeypatch):
    """Only the candidates' gallery x gallery DMLI is computed; the plain metrics are exact and
    the re-ranked ones close, down to K=1 (the scan keeps at least k1+1 candidates)."""
    import projects.AlignedReIDpp.alignedreidpp.evaluator as evaluator_module
    feats, pids, cams, nq = make_parts(seed=4, num_ids=30, per_id=6)
    exact, _ = evaluate(aligned_cfg("global_local", rerank=True), feats, pids, cams, nq)

    def no_full_gallery(*args, **kwargs):
        raise AssertionError("candidate mode computed the full gallery x gallery DMLI")

    monkeypatch.setattr(evaluator_module, "dmli_symmetric_blocks", no_full_gallery)
    cand, _ = evaluate(aligned_cfg("global_local", rerank=True, candidates=candidates), feats,
                       pids, cams, nq)
    for key in ("Rank-1", "Rank-5", "mAP", "mINP"):      # the plain distances stay exact
        assert cand[key] == pytest.approx(exact[key], abs=1e-6), key
    # 40 of 150 gallery samples hold every k-reciprocal neighbour here: nothing changes; with
    # the minimum (k1+1 = 7) the re-ranked mAP moves by about 1.2 points.
    keys = ("RK Rank-1", "RK Rank-5", "RK mAP") + (("RK mINP",) if candidates == 40 else ())
    tolerance = 1e-6 if candidates == 40 else 2.0
    for key in keys:
        assert abs(cand[key] - exact[key]) < tolerance, key


def test_missing_local_feature_is_named():
    feats, pids, cams, nq = make_parts()
    with pytest.raises(KeyError, match="'local'"):
        evaluate(aligned_cfg("local"), {"global": feats["global"]}, pids, cams, nq)
    with pytest.raises(ValueError, match="TEST.DISTANCE"):
        evaluate(aligned_cfg("both"), feats, pids, cams, nq)


@pytest.mark.parametrize("aligned", [True, False])
def test_mindspore_operator_path_equals_numpy(aligned):
    """The GPU / Ascend path (MindSpore operators), run here on the CPU backend."""
    rng = np.random.default_rng(6)
    x = normalize(rng.normal(size=(11 * 4, 8))).reshape(11, 4, 8)
    y = normalize(rng.normal(size=(7 * 4, 8))).reshape(7, 4, 8)
    ref = dmli_distance(x, y, aligned=aligned, device="CPU")
    ours = dmli_distance(x, y, aligned=aligned, block_size=4, device="GPU")
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
    sym = dmli_distance_symmetric(y, aligned=aligned, device="GPU")
    assert np.array_equal(sym, sym.T)


def test_distance_and_rerank_usable_on_their_own():
    """As tools/rank_gallery.py and tools/visualize_result.py use them (junk kept)."""
    feats, pids, cams, nq = make_parts(seed=5, num_ids=8, per_id=4, junk=0)
    cfg = aligned_cfg("global_local", rerank=False, candidates=50)
    ev = build_evaluator(cfg, nq)
    dist = ev.query_gallery_distance(feats, nq)
    glob, loc, _ = seed_like_distances(feats, pids, nq)
    np.testing.assert_allclose(dist, (glob + loc)[:nq, nq:], rtol=1e-5, atol=1e-5)
    rk = ev.rerank(feats, nq, dist)
    full = glob + loc
    ref = re_ranking(full[:nq, nq:], full[:nq, :nq], full[nq:, nq:], k1=6, k2=3)
    np.testing.assert_allclose(rk, ref, atol=1e-4)


@pytest.mark.parametrize("candidates", [0, 12])
def test_numpy_kernels_give_the_same_metrics(candidates, monkeypatch):
    """The whole AlignedReID++ evaluation (DMLI blocks and pairs, neighbour lists, Jaccard) with
    FASTREID_DMLI_KERNEL / FASTREID_RERANK_KERNEL = numpy equals the compiled kernels."""
    feats, pids, cams, nq = make_parts(seed=8, num_ids=12, per_id=5)
    cfg = aligned_cfg("global_local", rerank=True, candidates=candidates)
    compiled, _ = evaluate(cfg, feats, pids, cams, nq)
    monkeypatch.setenv("FASTREID_DMLI_KERNEL", "numpy")
    monkeypatch.setenv("FASTREID_RERANK_KERNEL", "numpy")
    plain, _ = evaluate(cfg, feats, pids, cams, nq)
    assert list(plain) == list(compiled)
    for key in compiled:
        assert plain[key] == pytest.approx(compiled[key], abs=1e-4), key


@pytest.mark.parametrize("kernel", KERNELS)
def test_symmetric_blocks_cover_each_pair_once(kernel, monkeypatch):
    """dmli_symmetric_blocks with many small tiles: every pair i <= j arrives exactly once, at a
    position with row <= column, with the value of the full computation."""
    import projects.AlignedReIDpp.alignedreidpp.dmli as dmli_module
    from projects.AlignedReIDpp.alignedreidpp.dmli import dmli_symmetric_blocks
    monkeypatch.setattr(dmli_module, "_BLOCK_CELLS", 256)      # 4 x 4-sample blocks
    rng = np.random.default_rng(9)
    x = rng.normal(size=(45, 4, 6)).astype(np.float32)
    full = dmli_distance(x, x, num_threads=1, kernel=kernel)
    seen = np.zeros((45, 45), dtype=np.int64)
    got = np.full((45, 45), np.nan, dtype=np.float32)
    tiles = []

    def consume(s, e, t, u, tile):
        tiles.append((s, t))
        assert tile.shape == (e - s, u - t) and t >= s
        rows, cols = np.nonzero(np.arange(s, e)[:, None] <= np.arange(t, u)[None, :])
        seen[rows + s, cols + t] += 1
        got[rows + s, cols + t] = tile[rows, cols]

    dmli_symmetric_blocks(x, consume, block_size=4, tile_size=12, num_threads=2, kernel=kernel)
    assert len(tiles) == 10                        # 4 x 4 tile grid: the upper half
    upper = np.triu(np.ones((45, 45), dtype=bool))
    assert (seen[upper] == 1).all() and (seen[~upper] == 0).all()
    strict = np.triu(upper, 1)
    np.testing.assert_allclose(got[strict], full[strict], rtol=1e-5, atol=1e-5)
    # d(i, i) sums square roots of rounding noise (the blocks differ): close, not equal.
    np.testing.assert_allclose(np.diag(got), np.diag(full), atol=2e-3)
