"""re_ranking against a direct, loop-based transcription of the published algorithm
(_builders.reference_re_ranking)."""
import numpy as np
import pytest

from fastreid_ms.evaluation.distance import compute_distance, compute_distance_symmetric
from fastreid_ms.evaluation.rerank import (PairLookup, re_ranking, re_ranking_neighbours,
                                           scan_neighbours)
from _builders import reference_re_ranking  # noqa: E402


def clustered_features(rng, num_ids, per_id, dim=16, spread=0.6):
    centers = rng.normal(size=(num_ids, dim))
    pids = np.repeat(np.arange(num_ids), per_id)
    feats = centers[pids] + spread * rng.normal(size=(pids.size, dim))
    return feats.astype(np.float32), pids


def split(feats, num_query):
    q, g = feats[:num_query], feats[num_query:]
    return (compute_distance(q, g), compute_distance_symmetric(q), compute_distance_symmetric(g))


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (5, 1, 0.5), (7, 3, 0.0), (4, 4, 1.0),
                                       (3, 2, 0.3)])
def test_matches_reference(k1, k2, lam, kernel, monkeypatch):
    monkeypatch.setenv("FASTREID_RERANK_KERNEL", kernel)
    rng = np.random.default_rng(k1 * 10 + k2)
    feats, _ = clustered_features(rng, num_ids=15, per_id=6)
    perm = rng.permutation(feats.shape[0])
    feats = feats[perm]
    q_g, q_q, g_g = split(feats, 25)
    ours = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    ref = reference_re_ranking(q_g, q_q, g_g, k1, k2, lam)
    assert ours.shape == (25, feats.shape[0] - 25)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_nonsymmetric_input_uses_columns():
    """The published code normalises columns and transposes: a non-symmetric original matrix
    must follow that exactly."""
    rng = np.random.default_rng(7)
    q_g = rng.random((8, 20)).astype(np.float32)
    q_q = rng.random((8, 8)).astype(np.float32)
    g_g = rng.random((20, 20)).astype(np.float32)
    ours = re_ranking(q_g, q_q, g_g, k1=6, k2=3, lambda_value=0.3)
    ref = reference_re_ranking(q_g, q_q, g_g, 6, 3, 0.3)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_neighbour_core_with_small_blocks_and_lookup():
    """The streaming path (neighbour lists from row blocks, distances of missing pairs
    computed on demand, small blocks) equals the dense one."""
    rng = np.random.default_rng(11)
    feats, _ = clustered_features(rng, num_ids=12, per_id=5)
    nq = 14
    q_g, q_q, g_g = split(feats, nq)
    dense = re_ranking(q_g, q_q, g_g, k1=6, k2=3, lambda_value=0.3)

    full = compute_distance_symmetric(feats)
    n = full.shape[0]
    top, extra = scan_neighbours(lambda s, e: full[s:e], n, 7, block_rows=5, keep_dist=True)
    calls = []

    def compute(i, j):
        calls.append(len(i))
        return full[i, j]

    lookup = PairLookup(top, extra["dist"], compute)
    out = re_ranking_neighbours(top, extra["row_max"], nq, lookup,
                                lambda s, e: full[s:e, nq:], k1=6, k2=3, lambda_value=0.3,
                                block_rows=3)
    np.testing.assert_allclose(out, dense, atol=1e-6)
    assert sum(calls) > 0          # some expanded-set pairs were outside the stored lists


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_neighbour_core_writes_into_the_arrays_it_reads(kernel, monkeypatch):
    """out= given the very arrays the callables read (several outputs, small query blocks):
    the same values as fresh outputs; a wrong out is refused."""
    monkeypatch.setenv("FASTREID_RERANK_KERNEL", kernel)
    rng = np.random.default_rng(12)
    feats, _ = clustered_features(rng, num_ids=10, per_id=5)
    nq = 12
    full = compute_distance_symmetric(feats)
    top, extra = scan_neighbours(lambda s, e: full[s:e], full.shape[0], 7, keep_dist=True)
    lookup = PairLookup(top, extra["dist"], lambda i, j: full[i, j])
    a = np.ascontiguousarray(full[:nq, nq:])
    b = (a * np.float32(1.5)).astype(np.float32)

    def run(out=None):
        return re_ranking_neighbours(top, extra["row_max"], nq, lookup,
                                     [lambda s, e: a[s:e], lambda s, e: b[s:e]], k1=6, k2=3,
                                     lambda_value=0.3, out=out)

    fresh = run()
    import fastreid_ms.evaluation.rerank as rerank_module
    monkeypatch.setattr(rerank_module, "_BLOCK_ELEMENTS", 3 * a.shape[1])   # blocks of 1 row
    got = run(out=[a, b])
    assert got[0] is a and got[1] is b
    np.testing.assert_array_equal(a, fresh[0])
    np.testing.assert_array_equal(b, fresh[1])
    with pytest.raises(ValueError, match="out must hold 2"):
        run(out=[a])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="q_q_dist"):
        re_ranking(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="k1"):
        re_ranking(np.ones((2, 3)), np.ones((2, 2)), np.ones((3, 3)), k1=0)
    top = np.zeros((5, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="CANDIDATES"):
        re_ranking_neighbours(top, np.ones(5), 2, None, None, k1=4, k2=2)


def test_rerank_improves_clustered_retrieval():
    from fastreid_ms.evaluation.rank import evaluate_rank
    rng = np.random.default_rng(0)
    feats, pids = clustered_features(rng, num_ids=30, per_id=8, spread=1.0)
    cams = np.tile(np.arange(8), 30)
    is_q = cams == 0
    order = np.concatenate([np.nonzero(is_q)[0], np.nonzero(~is_q)[0]])
    feats, pids, cams = feats[order], pids[order], cams[order]
    nq = int(is_q.sum())
    q_g, q_q, g_g = split(feats, nq)
    args = (pids[:nq], pids[nq:], cams[:nq], cams[nq:])
    _, map_plain, _ = evaluate_rank(q_g, *args)
    _, map_rk, _ = evaluate_rank(re_ranking(q_g, q_q, g_g, k1=6, k2=3), *args)
    assert map_rk > map_plain


def test_streamed_neighbour_lists_equal_full_scan():
    """Tiles of the upper half computed in threads and streamed into NeighbourLists give the
    k nearest (stable order), row maxima and farthest samples of the full matrix."""
    from fastreid_ms.evaluation.distance import stream_symmetric_tiles
    from fastreid_ms.evaluation.neighbours import NeighbourLists
    rng = np.random.default_rng(4)
    feats, _ = clustered_features(rng, num_ids=20, per_id=5)
    full = compute_distance_symmetric(feats)
    n = full.shape[0]
    top_ref = np.argsort(full, axis=1, kind="stable")[:, :9]
    for kernel in ("numba", "numpy"):
        lists = NeighbourLists(n, 9, num_far=3, kernel=kernel)
        stream_symmetric_tiles(feats, lambda s, e, t, u, tile: lists.add_tile(tile, s, t),
                               "euclidean", 16, (30,), num_threads=2)
        nb = lists.result()
        np.testing.assert_array_equal(nb["top"], top_ref)
        np.testing.assert_allclose(nb["dist"], np.take_along_axis(full, top_ref, axis=1),
                                   atol=1e-4)
        np.testing.assert_allclose(nb["row_max"], full.max(axis=1), rtol=1e-5)
        far_ref = np.argsort(-full, axis=1, kind="stable")[:, :3]
        np.testing.assert_array_equal(nb["far"], far_ref)
        np.testing.assert_allclose(nb["far_dist"], np.take_along_axis(full, far_ref, axis=1),
                                   rtol=1e-5)
