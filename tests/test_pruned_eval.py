"""Exact evaluation with pruning (TEST.LOCAL.PRUNE): bounds, the open-pair rule and the whole
pipeline against an exhaustive computation of the same distance on every pair."""
import numpy as np
import pytest

import projects.AlignedReIDpp.alignedreidpp  # noqa: F401  (keys and evaluator)
from fastreid_ms.config import get_cfg
from fastreid_ms.evaluation import build_evaluator
from fastreid_ms.evaluation.bounded_rank import match_masks, open_pairs
from fastreid_ms.evaluation.rank import evaluate_rank
from fastreid_ms.evaluation.rerank import re_ranking
from fastreid_ms.utils.blas import blas_core_for
from projects.AlignedReIDpp.alignedreidpp import dmli_numba
from projects.AlignedReIDpp.alignedreidpp.dmli import dmli_distance, dmli_pairs
from projects.AlignedReIDpp.alignedreidpp.dmli_bounds import (FloatParts, HalfParts,
                                                              PartProjection,
                                                              auto_rank, dmli_bounds,
                                                              dmli_pair_bounds, PATH_SLACK)
from projects.AlignedReIDpp.alignedreidpp.pruning import (ExactPairCache, PrunedEvaluation,
                                                          _build_queues,
                                                          _Candidates, _exact_neighbour_lists,
                                                          _round_counts, _take_round)


def _parts(rng, n, channels, power=1.5, noise=0.3, ids=None):
    """Unit parts (n, 8, C) with a decaying spectrum; ``ids`` share prototypes."""
    ids = np.arange(n) if ids is None else ids
    proto = rng.standard_normal((ids.max() + 1, 8, channels)).astype(np.float32)
    x = proto[ids] + noise * rng.standard_normal((n, 8, channels)).astype(np.float32)
    x *= np.arange(1, channels + 1, dtype=np.float32) ** (-power / 2)
    return x / np.linalg.norm(x, axis=2, keepdims=True)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("rank", [1, 6, 24])
def test_bounds_hold_for_the_computed_dmli(aligned, rank):
    rng = np.random.default_rng(rank)
    x = _parts(rng, 120, 48)
    x[7] = x[3]                                          # identical samples: d ~ 0
    x[9] = 5.0 * x[2]                                    # not unit norm
    proj = PartProjection(x, rank)
    lo, hi = dmli_bounds(proj, slice(0, 120), slice(0, 120), aligned)
    exact = dmli_distance(x, x, aligned=aligned)
    pairs = dmli_pairs(x, x, *np.triu_indices(120), aligned=aligned)
    assert (lo <= exact).all() and (exact <= hi).all()
    upper = np.triu_indices(120)
    assert (lo[upper] <= pairs).all() and (pairs <= hi[upper]).all()
    # The bounds tighten as the projection holds more of the energy; full rank is (nearly) exact.
    full = PartProjection(x, 48)
    flo, fhi = dmli_bounds(full, slice(0, 120), slice(0, 120), aligned)
    assert (fhi - flo).mean() < 0.2 * (hi - lo).mean() or rank == 24
    # Full rank: only the allowances are left: the bounds kernel's tanh (BOUND_COST_ERROR) and
    # PATH_SLACK per path cell, and the rounding (largest for cells near d = 0, where the square
    # root magnifies it, and for the sample of norm 5).
    allowance = (PATH_SLACK + dmli_numba.BOUND_COST_ERROR) * 16
    assert np.median(fhi - exact) < allowance + 1e-3 and np.abs(fhi - exact).max() < 0.1


@pytest.mark.parametrize("aligned", [True, False])
def test_float16_pair_bounds_hold_and_are_tight(aligned):
    """The second-level bounds from float16 parts hold for the exact pair kernel's values
    (identical samples, a part of norm 5, a part with a huge and tiny entries, near-equal
    samples, parts far outside float16's range: tiny, huge, zero) and are far tighter than the
    projection's."""
    rng = np.random.default_rng(21)
    x = _parts(rng, 90, 300)
    x[7] = x[3]                                          # identical: d ~ 0
    x[9] = 5.0 * x[2]                                    # not unit norm
    x[11, 2, :] = 1e-30
    x[11, 2, 0] = 3.0                                    # tiny entries next to a large one
    x[12] = x[13] + 1e-3 * x[14]                         # near-equal samples
    x[15] = 1e-20 * x[16]                                # below float16's range (scaled up)
    x[17] = 1e12 * x[18]                                 # above it (scaled down)
    x[19, 5] = 0.0                                       # a zero part
    i, j = np.triu_indices(90)
    parts16 = HalfParts(x)
    assert parts16.scale[17].max() > 1e6 and parts16.scale[15].max() < 1e-10
    lo, hi = dmli_pair_bounds(parts16, i, j, aligned)
    exact = dmli_pairs(x, x, i, j, aligned=aligned)
    assert (lo <= exact).all() and (exact <= hi).all()
    # the i side read as float32 (no rounding there): still bounds, and narrower
    lo32, hi32 = dmli_pair_bounds(parts16, i, j, aligned, x_parts=x)
    assert (lo32 <= exact).all() and (exact <= hi32).all()
    assert np.median(hi32 - lo32) < 0.8 * np.median(hi - lo)
    prepared = dmli_pair_bounds(parts16, i, j, aligned, x_parts=FloatParts(x))   # made once
    np.testing.assert_array_equal(prepared[0], lo32)
    np.testing.assert_array_equal(prepared[1], hi32)
    # float32 queries against float16 copies of other samples only (as the evaluation does)
    lo_q, hi_q = dmli_pair_bounds(HalfParts(x[30:]), i[j >= 30], j[j >= 30] - 30, aligned,
                                  x_parts=x)
    assert (lo_q <= exact[j >= 30]).all() and (exact[j >= 30] <= hi_q).all()
    with pytest.raises(ValueError, match="x_parts must be float32 parts"):
        dmli_pair_bounds(parts16, i, j, aligned, x_parts=np.ascontiguousarray(x[:, :, :10]))
    plo, phi = dmli_bounds(PartProjection(x, 24), slice(0, 90), slice(0, 90), aligned)
    # float16's 11-bit significand: about 1/250 of the projection's width here (measured)
    assert np.median(hi - lo) < 0.01 * np.median((phi - plo)[i, j])
    with pytest.raises(ValueError, match="non-finite"):
        HalfParts(np.full((2, 8, 16), np.inf, np.float32))
    with pytest.raises(ValueError, match="too large for the float16"):
        HalfParts(np.full((2, 8, 16), 1e30, np.float32))


def test_float16_bounds_in_gallery_blocks_equal_one_block():
    """PrunedEvaluation.refined_bounds makes the float16 copies for blocks of gallery samples:
    blocks of 7 samples (pairs unsorted, some blocks without pairs) give the very bounds of one
    block, and they hold for the exact DMLI."""
    rng = np.random.default_rng(21)
    nq, ng = 9, 40
    local = _parts(rng, nq + ng, 24)
    run = PrunedEvaluation(None, local, nq, np.arange(nq + ng), np.zeros(nq + ng, np.int64),
                           None, rank=4)
    rows = rng.integers(0, nq, 300)
    cols = np.concatenate([rng.integers(0, 14, 150), rng.integers(28, ng, 150)])
    one = run.refined_bounds(rows, cols)
    blocks = run.refined_bounds(rows, cols, half_bytes=7 * local.shape[1] * local.shape[2] * 2)
    np.testing.assert_array_equal(blocks[0], one[0])
    np.testing.assert_array_equal(blocks[1], one[1])
    exact = dmli_pairs(local, local, rows, cols + nq)
    assert np.all(one[0] <= exact) and np.all(exact <= one[1])


def test_projection_residual_and_energy():
    rng = np.random.default_rng(0)
    x = _parts(rng, 50, 600)                             # > 512 channels: randomised basis
    proj = PartProjection(x, 32)
    assert proj.basis.shape == (600, 32)
    np.testing.assert_allclose(proj.basis.T @ proj.basis, np.eye(32), atol=1e-5)
    recon = np.einsum("npr,cr->npc", proj.coords, proj.basis)
    np.testing.assert_allclose(np.linalg.norm(x - recon, axis=2), proj.residual, atol=1e-4)
    exact = PartProjection(x[:, :, :500], 32)           # eigen path on 500 channels
    assert 0.5 < proj.energy <= 1.0 and 0.5 < exact.energy <= 1.0
    assert auto_rank(2048) == 256 and auto_rank(1024) == 128 and auto_rank(128) == 0


def test_open_pairs_matches_a_loop():
    rng = np.random.default_rng(3)
    q, g = 9, 40
    lo = rng.random((q, g)).astype(np.float32)
    hi = lo + 0.3 * rng.random((q, g)).astype(np.float32)
    values = rng.random((q, g)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 4, q), rng.integers(0, 4, g)
    q_cams, g_cams = rng.integers(0, 2, q), rng.integers(0, 2, g)
    positive, valid = match_masks(q_pids, g_pids, q_cams, g_cams)
    out = open_pairs(lo, hi, values, positive, valid)
    for r in range(q):
        pos = values[r][positive[r]]
        for j in range(g):
            want = (valid[r, j] and not positive[r, j]
                    and bool(((pos >= lo[r, j]) & (pos <= hi[r, j])).any()))
            assert out[r, j] == want


def test_exact_pair_cache_computes_each_pair_once():
    calls = []

    def compute(i, j):
        calls.append(len(i))
        assert (i <= j).all()
        return (i * 100 + j).astype(np.float32)

    cache = ExactPairCache(50, compute)
    a = cache(np.array([3, 7, 7, 2]), np.array([5, 1, 1, 2]))
    np.testing.assert_array_equal(a, [305, 107, 107, 202])
    b, new, vals = cache(np.array([5, 9, 1]), np.array([3, 9, 7]), return_new=True)
    np.testing.assert_array_equal(b, [305, 909, 107])
    np.testing.assert_array_equal(new, [9 * 50 + 9])
    assert calls == [3, 1] and cache.computed == 4


def test_search_queues_match_a_loop():
    """Per row: the candidates with lo <= the k-th smallest upper bound by lo ascending, those
    with hi >= the largest lower bound by hi descending (ties in segment order: a stable sort),
    and the count in either; ties, signed zeros, infinities and short rows included."""
    rng = np.random.default_rng(8)
    n, k = 30, 4
    # row n - 3 holds 3 < k candidates (no k-th upper bound), the last two rows none
    rows = np.sort(np.concatenate([rng.integers(0, n - 3, 497), [n - 3] * 3]))
    lo = rng.standard_normal(500).astype(np.float32)
    lo[:40] = lo[40:80]                                         # ties
    lo[80:90] = [0.0, -0.0, np.inf, -np.inf, 1e-38, -1e-38, 3.5, -3.5, 1e30, -1e30]
    hi = (lo + rng.random(500).astype(np.float32)).astype(np.float32)
    hi[90:100] = hi[100:110]
    partners = rng.integers(0, n, 500)
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)
    near_end, max_end, either = (np.full(n, -1, np.int64) for _ in range(3))
    max_partner = np.zeros(500, np.int64)
    near_partner, near_key, max_key = partners.copy(), lo.copy(), hi.copy()   # built in place
    _build_queues(starts, near_partner, near_key, max_key, k, 0, n, near_end, max_end,
                  max_partner, either)
    for r in range(n):
        s, e = starts[r], starts[r + 1]
        seg_lo, seg_hi, seg_p = lo[s:e], hi[s:e], partners[s:e]
        kth = np.sort(seg_hi)[k - 1] if e - s >= k else np.inf
        max_lo = seg_lo.max() if e > s else -np.inf
        near = [t for t in sorted(range(e - s), key=lambda t: (seg_lo[t], t)) if seg_lo[t] <= kth]
        far = [t for t in sorted(range(e - s), key=lambda t: (-seg_hi[t], t))
               if seg_hi[t] >= max_lo]
        assert near_end[r] == s + len(near) and max_end[r] == s + len(far)
        np.testing.assert_array_equal(near_partner[s:near_end[r]], seg_p[near])
        np.testing.assert_array_equal(near_key[s:near_end[r]], seg_lo[near])
        np.testing.assert_array_equal(max_partner[s:max_end[r]], seg_p[far])
        np.testing.assert_array_equal(max_key[s:max_end[r]], -seg_hi[far])
        assert either[r] == np.count_nonzero((seg_lo <= kth) | (seg_hi >= max_lo))


def test_search_rounds_take_at_most_width_and_close_rows():
    """A round takes, per row, up to ``width`` candidates whose key passes the row's limit,
    and closes a row whose next candidate fails it (NaN fails too)."""
    key = np.array([1, 2, 3, 9, 1, 5, 0, np.nan, 4, 2], dtype=np.float32)
    partner = np.arange(10, dtype=np.int64) * 10
    cursor = np.array([0, 4, 6, 9], dtype=np.int64)   # rows of 4, 2, 3, 1 candidates
    end = np.array([4, 6, 9, 10], dtype=np.int64)
    limit = np.array([2.5, 10, 0.5, 1], dtype=np.float32)
    counts = np.empty(4, np.int64)
    assert _round_counts(cursor, end, key, limit, 2, counts) == 5
    np.testing.assert_array_equal(counts, [2, 2, 1, 0])
    rows, partners = np.empty(5, np.int64), np.empty(5, np.int64)
    _take_round(cursor, end, key, partner, limit, counts, rows, partners)
    np.testing.assert_array_equal(rows, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(partners, [0, 10, 40, 50, 60])
    # row 0: next key 3 > 2.5 closed; row 1: all taken; row 2: next is NaN, closed; row 3:
    # key 2 > 1, closed
    np.testing.assert_array_equal(cursor, end)


def test_candidate_lists_match_the_thresholds_of_a_loop():
    """Tiles of a symmetric matrix of bounds in any order: the per-row segments hold, once per
    row, every partner with lo <= the row's k-th smallest upper bound or hi >= its largest
    lower bound (and maybe more: the tiles filter by running thresholds), and the two search
    queues built from them hold exactly those."""
    rng = np.random.default_rng(9)
    n, k = 37, 4
    mid = rng.random((n, n)).astype(np.float32)
    mid = (mid + mid.T) / 2
    width = (0.2 * rng.random((n, n))).astype(np.float32)
    width = (width + width.T) / 2
    lo, hi = mid - width, mid + width
    cands = _Candidates(n, k)
    tiles = [(s, t) for s in range(0, n, 10) for t in range(s, n, 10)]
    for idx in rng.permutation(len(tiles)):
        s, t = tiles[idx]
        e, u = min(s + 10, n), min(t + 10, n)
        cands.add(lo[s:e, t:u].copy(), hi[s:e, t:u].copy(), s, t, symmetric_tile=(s == t))
    starts, partners, c_lo, c_hi = cands.segments(n)
    rows = np.repeat(np.arange(n), np.diff(starts))
    got = set(zip(rows.tolist(), partners.tolist()))
    assert len(got) == rows.size                         # no pair twice in a row
    np.testing.assert_array_equal(c_lo, lo[rows, partners])
    np.testing.assert_array_equal(c_hi, hi[rows, partners])
    want = set()
    for r in range(n):
        kth = np.sort(hi[r])[k - 1]
        for q in range(n):
            if lo[r, q] <= kth or hi[r, q] >= lo[r].max():
                want.add((r, q))
    assert want <= got
    assert partners.dtype == np.int32
    near_end, max_end, either = (np.empty(n, np.int64) for _ in range(3))
    max_partner = np.empty_like(partners)
    _build_queues(starts, partners, c_lo, c_hi, k, 0, n, near_end, max_end, max_partner, either)
    queued = set()
    for r in range(n):
        queued |= {(r, int(q)) for q in partners[starts[r]:near_end[r]]}
        queued |= {(r, int(q)) for q in max_partner[starts[r]:max_end[r]]}
    assert queued == want and int(either.sum()) == len(want)


def test_neighbour_search_with_known_pairs_asks_for_the_k_nearest_only():
    """Tight bounds, some rows' lists already known: each row asks for its k nearest once
    (a bug that mixed positions once had rows behind a closed one wait and then take larger
    steps, several times more pairs on real bounds)."""
    rng = np.random.default_rng(4)
    n, k = 50, 5
    d = rng.permutation(n * n).reshape(n, n).astype(np.float32)
    d = np.minimum(d, d.T)
    np.fill_diagonal(d, 0)
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    order = np.argsort(i, kind="stable")
    rows, partners = i[order], j[order]
    lo, hi = d[rows, partners] - 0.25, d[rows, partners] + 0.25
    cache = ExactPairCache(n, lambda a, b: d[a, b])
    cache(np.zeros(n - 1, np.int64), np.arange(1, n))         # row 0 fully known, as the
    first = (cache.keys // n, cache.keys % n, cache.vals)     # query x gallery pairs are
    taken = {}
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    lists = _exact_neighbour_lists(n, k, starts, partners, lo, hi, cache, first, taken=taken)
    got = np.sort(lists.result()["dist"], axis=1)
    masked = d + np.diag(np.full(n, np.inf, np.float32))
    np.testing.assert_array_equal(got[:, :k], np.sort(masked, axis=1)[:, :k])
    assert taken["nearest"] == n * k


def _dataset(rng, num_query, num_gallery, channels):
    """Features with identities, ties (a duplicated gallery sample), distractors and junk."""
    n = num_query + num_gallery
    ids = rng.integers(1, 12, n)
    pids = ids.copy()
    pids[num_query + 5:num_query + 9] = 0                 # distractors
    pids[num_query + 9:num_query + 11] = -1               # junk (left out by the evaluator)
    camids = rng.integers(0, 3, n)
    local = _parts(rng, n, channels, ids=ids)
    glob = local.mean(axis=1) + 0.2 * rng.standard_normal((n, channels)).astype(np.float32)
    local[num_query + 1] = local[num_query + 0]           # tie in the local part
    glob[num_query + 1] = glob[num_query + 0]
    pids[num_query + 1] = pids[num_query + 0]
    camids[num_query + 1] = camids[num_query + 0]
    return {"global": glob, "local": local}, pids, camids


def _config(prune, mode, aligned, rank, rerank=True):
    cfg = get_cfg()
    cfg.TEST.EVALUATOR = "AlignedReIDEvaluator"
    cfg.TEST.DISTANCE = mode
    cfg.TEST.LOCAL.ALIGNED = aligned
    cfg.TEST.LOCAL.PRUNE = prune
    cfg.TEST.LOCAL.PRUNE_DIM = rank
    cfg.TEST.RERANK.ENABLED = rerank
    return cfg


def _exhaustive(feats, pids, camids, nq, mode, aligned, protocol="market"):
    """Metrics of the same distance computed on every pair (the evaluator's pair function)."""
    ev = build_evaluator(_config(False, mode, aligned, 0), nq)
    ev.process(feats, pids, camids)
    f, p, c, nq = ev._collect()
    ev._mode_cache = mode
    ev._cached_global = ev._global_features(f, nq) if mode != "local" else None
    ev._cached_local = ev._local_features(f)
    n = p.shape[0]
    ii, jj = np.triu_indices(n)
    d = ev._pair_distance(ii, jj)
    full = np.empty((n, n), np.float32)
    full[ii, jj] = d
    full[jj, ii] = d
    qg = full[:nq, nq:]
    out = {}
    cmc, mAP, mINP = evaluate_rank(qg, p[:nq], p[nq:], c[:nq], c[nq:], protocol=protocol)
    rk = re_ranking(qg, full[:nq, :nq], full[nq:, nq:])
    rcmc, rmAP, rmINP = evaluate_rank(rk, p[:nq], p[nq:], c[:nq], c[nq:], protocol=protocol)
    for prefix, (cm, ap, inp) in (("", (cmc, mAP, mINP)), ("RK ", (rcmc, rmAP, rmINP))):
        for r in (1, 5, 10, 20):
            out[f"{prefix}Rank-{r}"] = 100 * cm[r - 1]
        out[f"{prefix}mAP"] = 100 * ap
        out[f"{prefix}mINP"] = 100 * inp
    return out


@pytest.mark.parametrize("mode,aligned,rank", [("global_local", True, 4),
                                               ("global_local", True, 1),   # loose bounds
                                               ("local", True, 8),
                                               ("global_local", False, 12)])
def test_pruned_metrics_equal_the_exhaustive_computation(mode, aligned, rank):
    rng = np.random.default_rng(rank)
    nq, ng = 30, 170
    feats, pids, camids = _dataset(rng, nq, ng, 24)
    want = _exhaustive(feats, pids, camids, nq, mode, aligned)
    ev = build_evaluator(_config(True, mode, aligned, rank), nq)
    ev.process(feats, pids, camids)
    got = ev.evaluate()
    assert ev.prune_stats is not None and ev.prune_stats["projection_rank"] == rank
    if rank == 1:
        # loose projection bounds leave thousands of query x gallery pairs open; the float16
        # bounds settle nearly all of them (exact: the correct matches and a few more)
        stats = ev.prune_stats
        assert stats["qg_refined"] > 1000 and stats["qg_exact"] < stats["qg_refined"] / 4
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    # and against the block kernels of TEST.LOCAL.PRUNE False (rounding of another kernel)
    ev_full = build_evaluator(_config(False, mode, aligned, 0), nq)
    ev_full.process(feats, pids, camids)
    full = ev_full.evaluate()
    for key in want:
        assert got[key] == pytest.approx(full[key], abs=0.5), key


def test_pruned_metrics_under_the_cuhk03_protocol():
    """Pruning is the default, so it must hold for the single-gallery-shot protocol too."""
    rng = np.random.default_rng(3)
    feats, pids, camids = _dataset(rng, 30, 170, 24)
    want = _exhaustive(feats, pids, camids, 30, "global_local", True, protocol="cuhk03")
    cfg = _config(True, "global_local", True, 4)
    cfg.TEST.PROTOCOL = "cuhk03"
    ev = build_evaluator(cfg, 30)
    ev.process(feats, pids, camids)
    got = ev.evaluate()
    assert ev.prune_stats is not None
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_pruned_metrics_with_the_numpy_pair_kernel(monkeypatch):
    """FASTREID_DMLI_KERNEL=numpy: exact pairs from the NumPy kernel, still equal."""
    monkeypatch.setenv("FASTREID_DMLI_KERNEL", "numpy")
    rng = np.random.default_rng(11)
    feats, pids, camids = _dataset(rng, 20, 120, 24)
    want = _exhaustive(feats, pids, camids, 20, "global_local", True)
    ev = build_evaluator(_config(True, "global_local", True, 6), 20)
    ev.process(feats, pids, camids)
    got = ev.evaluate()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_pruning_computes_few_pairs_when_the_projection_holds_the_energy():
    rng = np.random.default_rng(5)
    nq, ng = 40, 400
    feats, pids, camids = _dataset(rng, nq, ng, 64)
    ev = build_evaluator(_config(True, "global_local", True, 32), nq)
    ev.process(feats, pids, camids)
    got = ev.evaluate()
    stats = ev.prune_stats
    assert stats["projection_energy"] > 0.95
    assert stats["fraction_computed"] < 0.5
    # every pair the neighbour step computed was asked for by one of its two searches
    asked = stats["neighbour_asked_nearest"] + stats["neighbour_asked_maximum"]
    assert stats["neighbour_asked_nearest"] > 0 and stats["neighbour_asked_maximum"] > 0
    assert asked >= stats["neighbour_exact"]
    want = _exhaustive(feats, pids, camids, nq, "global_local", True)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_small_parts_fall_back_to_every_pair():
    rng = np.random.default_rng(1)
    feats, pids, camids = _dataset(rng, 10, 60, 16)
    ev = build_evaluator(_config(True, "global_local", True, 0), 10)
    ev.process(feats, pids, camids)
    ev.evaluate()
    assert ev.prune_stats is None                     # auto: 16 channels < 512, no pruning


@pytest.mark.parametrize("flags,core", [({"avx2", "fma"}, "Haswell"),
                                        ({"avx2", "fma", "avx512f", "avx512cd", "avx512bw",
                                          "avx512dq", "avx512vl"}, "SkylakeX"),
                                        ({"sse4_2"}, None)])
def test_blas_core_from_cpu_flags(flags, core):
    assert blas_core_for(flags) == core
