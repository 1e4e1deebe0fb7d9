"""evaluate_rank against a slow, obviously correct per-query loop (_builders.slow_rank)."""
import numpy as np
import pytest

from fastreid_ms.evaluation.rank import evaluate_rank
from _builders import slow_rank  # noqa: E402


def random_case(rng, num_q=30, num_g=120, num_ids=12, num_cams=3, levels=None):
    q_pids = rng.integers(0, num_ids + 3, num_q)          # some query ids absent from the gallery
    g_pids = rng.integers(-1, num_ids, num_g)             # -1 junk, 0 distractors
    q_camids = rng.integers(0, num_cams, num_q)
    g_camids = rng.integers(0, num_cams, num_g)
    if levels:
        dist = rng.integers(0, levels, (num_q, num_g)).astype(np.float32)  # many ties
    else:
        dist = rng.random((num_q, num_g)).astype(np.float32)
        # correct matches somewhat closer, so metrics are not all near chance
        dist -= 0.3 * (q_pids[:, None] == g_pids[None, :])
    return dist, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize("levels", [None, 4, 20])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_slow_loop(levels, seed):
    rng = np.random.default_rng(seed)
    dist, q_pids, g_pids, q_camids, g_camids = random_case(rng, levels=levels)
    cmc, mAP, mINP = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids, max_rank=10)
    ref_cmc, ref_map, ref_minp = slow_rank(dist, q_pids, g_pids, q_camids, g_camids, 10)
    assert cmc.shape == (10,)
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-12)
    assert mAP == pytest.approx(ref_map, abs=1e-12)
    assert mINP == pytest.approx(ref_minp, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_signed_values_zeros_and_infinities(dtype):
    """Negative distances, -0.0 next to 0.0 (equal: ties by index), infinities; both the
    float32 sort-key path and the generic path; and NaN (rows fall back to a full sort)."""
    rng = np.random.default_rng(7)
    dist, q_pids, g_pids, q_camids, g_camids = random_case(rng, levels=5)
    dist = (dist - 2.0).astype(dtype)
    dist[rng.random(dist.shape) < 0.1] = -0.0
    dist[rng.random(dist.shape) < 0.1] = 0.0
    dist[rng.random(dist.shape) < 0.05] = np.inf
    dist[rng.random(dist.shape) < 0.05] = -np.inf
    got = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids, max_rank=10)
    ref = slow_rank(dist, q_pids, g_pids, q_camids, g_camids, 10)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-12)
    assert got[1:] == pytest.approx(ref[1:], abs=1e-12)
    dist[np.isinf(dist)] = 0.5
    dist[0, :5] = np.nan                       # sorted last, as a stable sort puts them
    got = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids, max_rank=10)
    key = np.where(np.isnan(dist), np.inf, dist)
    ref = slow_rank(key, q_pids, g_pids, q_camids, g_camids, 10)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-12)


def test_small_blocks_equal_one_block(monkeypatch):
    import fastreid_ms.evaluation.rank as rank_mod
    rng = np.random.default_rng(5)
    case = random_case(rng, num_q=50, num_g=80, levels=6)
    full = evaluate_rank(*case, max_rank=20)
    monkeypatch.setattr(rank_mod, "_BLOCK_ELEMENTS", 160)   # two queries per block
    blocked = evaluate_rank(*case, max_rank=20)
    np.testing.assert_allclose(full[0], blocked[0])
    assert full[1:] == pytest.approx(blocked[1:])


def test_hand_example():
    # one query (pid 1, cam 0); gallery sorted by distance: neg, pos, same-cam pos (dropped),
    # junk (dropped), pos, distractor
    dist = np.array([[0.1, 0.2, 0.25, 0.3, 0.4, 0.5]], dtype=np.float32)
    g_pids = np.array([2, 1, 1, -1, 1, 0])
    g_cams = np.array([1, 1, 0, 1, 2, 1])
    cmc, mAP, mINP = evaluate_rank(dist, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=5)
    np.testing.assert_allclose(cmc, [0, 1, 1, 1, 1])
    assert mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert mINP == pytest.approx(2 / 3)


def test_short_gallery_pads_cmc():
    dist = np.array([[0.3, 0.1]], dtype=np.float32)
    cmc, mAP, _ = evaluate_rank(dist, np.array([1]), np.array([1, 2]), np.array([0]),
                                np.array([1, 1]), max_rank=5)
    np.testing.assert_allclose(cmc, [0, 1, 1, 1, 1])
    assert mAP == pytest.approx(0.5)


def test_no_valid_query_raises():
    dist = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="No query has a correct match"):
        evaluate_rank(dist, np.array([1, 2]), np.array([1, 3, 4]), np.array([0, 0]),
                      np.array([0, 1, 1]))


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="g_camids"):
        evaluate_rank(np.zeros((1, 3)), [1], [1, 2, 3], [0], [0, 1])
    with pytest.raises(ValueError, match="protocol"):
        evaluate_rank(np.zeros((1, 1)), [1], [1], [0], [1], protocol="duke")


def test_cuhk03_single_shot_equals_market_with_one_sample_per_id():
    rng = np.random.default_rng(3)
    num_ids = 40
    g_pids = rng.permutation(num_ids)
    g_cams = np.ones(num_ids, dtype=np.int64)
    q_pids = rng.integers(0, num_ids, 25)
    q_cams = np.zeros(25, dtype=np.int64)
    dist = rng.random((25, num_ids)).astype(np.float32)
    market = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    cuhk = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10, protocol="cuhk03",
                         repeats=3)
    np.testing.assert_allclose(cuhk[0], market[0])
    assert cuhk[1] == pytest.approx(market[1])


def test_cuhk03_single_shot_expectation():
    """One query; its id has samples at distances 0.1 and 0.4, another id at 0.2 and 0.3.
    Drawing one sample per id: rank 1 when 0.1 is drawn (probability 1/2), else rank 2."""
    dist = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    g_pids = np.array([1, 2, 2, 1])
    g_cams = np.array([1, 1, 1, 1])
    cmc, _, _ = evaluate_rank(dist, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=2,
                              protocol="cuhk03", repeats=4000, seed=1)
    # positive at 0.1 (rank 1) or at 0.4 (rank 2: the other id always comes first)
    np.testing.assert_allclose(cmc, [0.5, 1.0], atol=0.03)


def test_per_query_metrics_match_slow_loop():
    from fastreid_ms.evaluation.rank import per_query_metrics
    rng = np.random.default_rng(9)
    dist, q_pids, g_pids, q_camids, g_camids = random_case(rng, levels=5)
    ap, first = per_query_metrics(dist, q_pids, g_pids, q_camids, g_camids)
    for i in range(dist.shape[0]):
        has = ((g_pids == q_pids[i]) & (g_camids != q_camids[i])).any()
        if not has:
            assert np.isnan(ap[i]) and first[i] == 0
            continue
        cmc, m, _ = slow_rank(dist[i:i + 1], q_pids[i:i + 1], g_pids, q_camids[i:i + 1], g_camids,
                              dist.shape[1])
        assert ap[i] == pytest.approx(m)
        assert first[i] == int(np.argmax(cmc > 0)) + 1
