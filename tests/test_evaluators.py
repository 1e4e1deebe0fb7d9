"""ReidEvaluator, inference_on_dataset and results_table (the AlignedReID++ evaluator is in
test_dmli_eval.py)."""
import logging
import os

import numpy as np
import pytest

from fastreid_ms.config import get_cfg
from fastreid_ms.evaluation import (EVALUATOR_REGISTRY, ReidEvaluator, build_evaluator,
                                    inference_on_dataset, results_table)
from fastreid_ms.evaluation.reid_evaluation import METRIC_NAMES, average_query_expansion
from _builders import reference_distance, reference_re_ranking, slow_rank  # noqa: E402

RANKS = (1, 5, 10, 20)


def make_set(seed=0, num_ids=20, per_id=6, dim=12, junk=3):
    """Clustered features, queries (camera 0) first, then gallery (+ junk samples)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_ids, dim))
    pids = np.repeat(np.arange(num_ids), per_id)
    cams = np.tile(np.arange(per_id), num_ids)
    feats = (centers[pids] + 0.8 * rng.normal(size=(pids.size, dim))).astype(np.float32)
    q = cams == 0
    order = np.concatenate([np.nonzero(q)[0], np.nonzero(~q)[0]])
    feats, pids, cams = feats[order], pids[order], cams[order]
    junk_feats = rng.normal(size=(junk, dim)).astype(np.float32)
    feats = np.concatenate([feats, junk_feats])
    pids = np.concatenate([pids, -np.ones(junk, dtype=np.int64)])
    cams = np.concatenate([cams, np.ones(junk, dtype=np.int64)])
    return feats, pids, cams, int(q.sum())


def plain_cfg(metric="euclidean"):
    """A default config with every evaluation option these tests depend on set explicitly."""
    cfg = get_cfg()
    cfg.TEST.METRIC = metric
    cfg.TEST.PROTOCOL = "market"
    cfg.TEST.MAX_RANK = 50
    cfg.TEST.AQE.ENABLED = False
    cfg.TEST.RERANK.ENABLED = False
    return cfg


def drop_junk(feats, pids, cams):
    keep = pids != -1
    return feats[keep], pids[keep], cams[keep]


def reference_metrics(dist, pids, cams, nq, prefix=""):
    """The evaluator's result dict (percent) of the (Q, G) distance ``dist`` by the slow loop."""
    cmc, mAP, mINP = slow_rank(dist, pids[:nq], pids[nq:], cams[:nq], cams[nq:], 50)
    out = {f"{prefix}Rank-{r}": cmc[r - 1] * 100 for r in RANKS}
    out.update({f"{prefix}mAP": mAP * 100, f"{prefix}mINP": mINP * 100})
    return out


def assert_metrics_equal(res, ref, abs_tol=1e-4):
    for key, value in ref.items():
        assert res[key] == pytest.approx(value, abs=abs_tol), key


def slow_aqe(feats, qe_times, qe_k, alpha):
    """Alpha-weighted average query expansion, one feature at a time (float64): each feature
    becomes the mean over its qe_k most cosine-similar features (itself included) of
    feature * similarity ** alpha; repeated qe_times times."""
    x = np.asarray(feats, np.float64)
    for _ in range(qe_times):
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        new = np.empty_like(x)
        for i in range(x.shape[0]):
            sims = [float(unit[i] @ unit[j]) for j in range(x.shape[0])]
            top = sorted(range(x.shape[0]), key=lambda j: -sims[j])[:qe_k]
            new[i] = sum(x[j] * sims[j] ** alpha for j in top) / qe_k
        x = new
    return x


def slow_cuhk03_cmc(dist, q_pids, g_pids, q_cams, g_cams, max_rank, repeats=10, seed=0):
    """CUHK03 single-gallery-shot CMC, one draw and one query at a time, from the random numbers
    that fastreid_ms/evaluation/rank.py draws (np.random.default_rng(seed)): for each draw one
    key per gallery sample, the sample of smallest key kept per identity (junk never); then, per
    draw, one number u per valid query (in query order) choosing its positive number
    floor(u * #positives) in rank order. The rank of the chosen positive counts only the kept
    samples of other identities before it."""
    rng = np.random.default_rng(seed)
    num_g = len(g_pids)
    kept = []
    for _ in range(repeats):
        keys = rng.random(num_g)
        chosen = set()
        for pid in set(g_pids.tolist()) - {-1}:
            chosen.add(min((j for j in range(num_g) if g_pids[j] == pid), key=lambda j: keys[j]))
        kept.append(chosen)
    queries = []
    for i in range(dist.shape[0]):
        order = sorted(range(num_g), key=lambda j: (dist[i, j], j))
        positives = [j for j in order if g_pids[j] == q_pids[i] and g_cams[j] != q_cams[i]]
        if positives:
            queries.append((i, order, positives))
    hits = np.zeros((len(queries), repeats, max_rank))
    for r in range(repeats):
        u = rng.random(len(queries))
        for v, (i, order, positives) in enumerate(queries):
            p = positives[min(int(u[v] * len(positives)), len(positives) - 1)]
            rank = 1 + sum(1 for j in order[:order.index(p)]
                           if j in kept[r] and g_pids[j] != q_pids[i])
            hits[v, r] = [rank <= k for k in range(1, max_rank + 1)]
    return hits.mean(axis=(0, 1))


def run_evaluator(cfg, feats, pids, cams, nq, batch=7, name="ReidEvaluator"):
    cfg.TEST.EVALUATOR = name
    ev = build_evaluator(cfg, nq)
    ev.reset()
    for s in range(0, len(pids), batch):
        ev.process({k: v[s:s + batch] for k, v in feats.items()}, pids[s:s + batch],
                   cams[s:s + batch])
    return ev.evaluate()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_reid_evaluator_matches_slow_reference_in_percent(metric):
    """Distances written out in numpy (squared euclidean / 1 - cos) and ranked by the slow loop;
    junk gallery samples left out."""
    feats, pids, cams, nq = make_set()
    res = run_evaluator(plain_cfg(metric), {"global": feats}, pids, cams, nq)
    assert list(res) == list(METRIC_NAMES)
    f, p, c = drop_junk(feats, pids, cams)
    ref = reference_metrics(reference_distance(f[:nq], f[nq:], metric), p, c, nq)
    assert_metrics_equal(res, ref, abs_tol=1e-9)
    assert 0 < ref["Rank-1"] < ref["Rank-5"]      # the data tells the ranks apart


def test_evaluator_keeps_one_copy_of_the_features_and_evaluates_again():
    """After evaluate() the per-batch arrays are replaced by the collected ones, junk removed
    (so evaluation holds one copy of the features); a second evaluate() gives the same metrics,
    and batches added afterwards still count."""
    feats, pids, cams, nq = make_set(junk=3)
    ev = build_evaluator(plain_cfg(), nq)
    ev.reset()
    for s in range(0, len(pids), 7):
        ev.process({"global": feats[s:s + 7]}, pids[s:s + 7], cams[s:s + 7])
    first = ev.evaluate()
    assert len(ev._features["global"]) == 1 and len(ev._pids) == 1
    assert ev._features["global"][0].shape[0] == len(pids) - 3          # junk left out
    assert ev.evaluate() == first
    extra = feats[nq:nq + 4] + np.float32(0.01)                          # near duplicates
    ev.process({"global": extra}, pids[nq:nq + 4], cams[nq:nq + 4])
    more = ev.evaluate()
    f, p, c = drop_junk(np.concatenate([feats, extra]), np.concatenate([pids, pids[nq:nq + 4]]),
                        np.concatenate([cams, cams[nq:nq + 4]]))
    assert_metrics_equal(more, reference_metrics(reference_distance(f[:nq], f[nq:], "euclidean"),
                                                 p, c, nq), abs_tol=1e-9)


def test_freed_batches_leave_the_resident_memory():
    """Batch-sized arrays freed in the middle of the heap (small ones behind them) no longer
    count in the process's resident size after release_freed_memory (glibc's malloc_trim)."""
    import platform
    from fastreid_ms.utils.memory import release_freed_memory
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert release_freed_memory() in (True, False)
        return

    def resident_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    first = np.ones(16 << 20, np.uint8)        # freeing it raises glibc's mmap threshold,
    del first                                  # so the batches below come from the heap
    before = resident_mb()
    batches, pins = [], []
    for _ in range(48):
        batches.append(np.ones(4 << 20, np.uint8))
        pins.append(np.ones(1000, np.uint8))   # small blocks after each: no trim at the top
    assert resident_mb() - before > 150
    del batches
    assert release_freed_memory() is True
    assert resident_mb() - before < 60


def test_collection_copies_kept_rows_batch_by_batch_and_releases_each_batch():
    """The gathered rows equal the concatenation with junk left out; every batch entry is
    dropped once copied; batches of different per-sample shapes are refused by name."""
    from fastreid_ms.evaluation.reid_evaluation import _gather_rows
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((b, 2, 3)).astype(np.float32) for b in (4, 1, 5, 3)]
    keep = rng.random(13) < 0.6
    keep[:4] = [True, False, True, True]
    want = np.concatenate(batches)[keep]
    got = _gather_rows(batches, keep)
    np.testing.assert_array_equal(got, want)
    assert batches == [None] * 4
    single = [want]
    assert _gather_rows(single, np.ones(len(want), bool)) is want
    feats, pids, cams, nq = make_set()
    ev = build_evaluator(plain_cfg(), nq)
    ev.reset()
    ev.process({"global": feats[:5]}, pids[:5], cams[:5])
    ev.process({"global": feats[5:, :-1]}, pids[5:], cams[5:])
    with pytest.raises(ValueError, match="'global' came in batches of different shapes"):
        ev.evaluate()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("candidates", [0, 30])
def test_reid_evaluator_rerank_equals_reference_re_ranking(metric, candidates):
    feats, pids, cams, nq = make_set(seed=1)
    cfg = plain_cfg(metric)
    cfg.TEST.RERANK.ENABLED = True
    cfg.TEST.RERANK.K1 = 8
    cfg.TEST.RERANK.K2 = 3
    cfg.TEST.RERANK.LAMBDA = 0.3
    cfg.TEST.RERANK.CANDIDATES = candidates
    cfg.TEST.BLOCK_SIZE = 16
    res = run_evaluator(cfg, {"global": feats}, pids, cams, nq)
    assert list(res) == list(METRIC_NAMES) + ["RK " + m for m in METRIC_NAMES]
    f, p, c = drop_junk(feats, pids, cams)
    q, g = f[:nq], f[nq:]
    original = reference_distance(q, g, metric)
    ref = reference_re_ranking(original, reference_distance(q, q, metric),
                               reference_distance(g, g, metric), k1=8, k2=3, lambda_value=0.3)
    assert_metrics_equal(res, reference_metrics(original, p, c, nq), abs_tol=1e-9)
    assert_metrics_equal(res, reference_metrics(ref, p, c, nq, prefix="RK "))


def test_rerank_lambda_is_applied():
    """A non-default TEST.RERANK.LAMBDA: the re-ranked metrics are those of the reference with
    that lambda, and differ from the default lambda's."""
    feats, pids, cams, nq = make_set(seed=1)
    results = {}
    for lam in (0.3, 0.8):
        cfg = plain_cfg()
        cfg.TEST.RERANK.ENABLED = True
        cfg.TEST.RERANK.K1 = 8
        cfg.TEST.RERANK.K2 = 3
        cfg.TEST.RERANK.LAMBDA = lam
        results[lam] = run_evaluator(cfg, {"global": feats}, pids, cams, nq)
    f, p, c = drop_junk(feats, pids, cams)
    q, g = f[:nq], f[nq:]
    ref = reference_re_ranking(reference_distance(q, g), reference_distance(q, q),
                               reference_distance(g, g), k1=8, k2=3, lambda_value=0.8)
    assert_metrics_equal(results[0.8], reference_metrics(ref, p, c, nq, prefix="RK "))
    assert results[0.8]["RK mAP"] != pytest.approx(results[0.3]["RK mAP"], abs=0.5)
    assert results[0.8]["RK mINP"] != pytest.approx(results[0.3]["RK mINP"], abs=0.5)
    assert results[0.8]["mAP"] == results[0.3]["mAP"]             # lambda only re-ranks


def test_aqe_blocked_equals_unblocked_and_a_direct_loop():
    feats, pids, cams, nq = make_set(seed=2, junk=0)
    q1, g1 = average_query_expansion(feats, nq, 1, 3, 3.0, block_size=1000)
    q2, g2 = average_query_expansion(feats, nq, 1, 3, 3.0, block_size=5)
    np.testing.assert_allclose(q1, q2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-6)
    # against a direct loop
    norm = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sims = norm @ norm.T
    for i in (0, 5, 40):
        top = np.argsort(-sims[i])[:3]
        expected = (feats[top] * (sims[i, top] ** 3.0)[:, None]).mean(axis=0)
        got = q1[i] if i < nq else g1[i - nq]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_evaluator_applies_aqe(metric):
    """TEST.AQE: the metrics are those of the features expanded by the slow loop (junk left out
    first), ranked by the slow reference, and differ from those without expansion."""
    feats, pids, cams, nq = make_set(seed=2)
    cfg = plain_cfg(metric)
    cfg.TEST.AQE.ENABLED = True
    cfg.TEST.AQE.QE_TIME = 2
    cfg.TEST.AQE.QE_K = 3
    cfg.TEST.AQE.ALPHA = 3.0
    res = run_evaluator(cfg, {"global": feats}, pids, cams, nq)
    plain = run_evaluator(plain_cfg(metric), {"global": feats}, pids, cams, nq)
    f, p, c = drop_junk(feats, pids, cams)
    x = slow_aqe(f, 2, 3, 3.0)
    ref = reference_metrics(reference_distance(x[:nq], x[nq:], metric), p, c, nq)
    assert_metrics_equal(res, ref, abs_tol=1e-9)
    assert_metrics_equal(plain, reference_metrics(reference_distance(f[:nq], f[nq:], metric),
                                                  p, c, nq), abs_tol=1e-9)
    assert res["mAP"] != pytest.approx(plain["mAP"], abs=1.0)
    assert res["mINP"] != pytest.approx(plain["mINP"], abs=1.0)


def test_cuhk03_protocol_equals_slow_single_shot():
    """TEST.PROTOCOL cuhk03: CMC of the single-gallery-shot draws (the library's random numbers,
    replayed one draw and one query at a time), mAP / mINP over all valid samples; on clustered
    data with 5 gallery samples per identity it differs from the market CMC."""
    feats, pids, cams, nq = make_set(seed=4)
    results = {}
    for protocol in ("market", "cuhk03"):
        cfg = plain_cfg()
        cfg.TEST.PROTOCOL = protocol
        results[protocol] = run_evaluator(cfg, {"global": feats}, pids, cams, nq)
    f, p, c = drop_junk(feats, pids, cams)
    dist = reference_distance(f[:nq], f[nq:])
    market = reference_metrics(dist, p, c, nq)
    cmc = slow_cuhk03_cmc(dist, p[:nq], p[nq:], c[:nq], c[nq:], 50, repeats=10, seed=0)
    cuhk = {f"Rank-{r}": cmc[r - 1] * 100 for r in RANKS}
    cuhk.update(mAP=market["mAP"], mINP=market["mINP"])
    assert_metrics_equal(results["cuhk03"], cuhk, abs_tol=1e-9)
    assert_metrics_equal(results["market"], market, abs_tol=1e-9)
    assert cuhk["Rank-1"] != pytest.approx(market["Rank-1"], abs=1.0)


def test_evaluator_errors():
    cfg = get_cfg()
    ev = ReidEvaluator(cfg, 3)
    with pytest.raises(RuntimeError, match="before any process"):
        ev.evaluate()
    ev.process({"local": np.zeros((4, 2, 3))}, np.arange(4), np.zeros(4))
    with pytest.raises(KeyError, match="'global'"):
        ev.evaluate()
    assert "ReidEvaluator" in EVALUATOR_REGISTRY


class FakeModel:
    """Eval-mode 'model': features are the mean of each image row (depends on the flip)."""

    def __init__(self):
        self.train_mode = None
        self.calls = 0

    def set_train(self, mode):
        self.train_mode = mode

    def __call__(self, images):
        import mindspore as ms
        self.calls += 1
        x = images.asnumpy()
        w = np.linspace(1.0, 2.0, x.shape[3], dtype=np.float32)
        feat = (x * w).mean(axis=(1, 2))                  # (B, W): not flip invariant
        return {"global": ms.Tensor(feat)}


def test_inference_on_dataset_and_flip(caplog):
    import mindspore as ms
    rng = np.random.default_rng(0)
    num_ids, per_id = 6, 4
    pids = np.repeat(np.arange(num_ids), per_id)
    cams = np.tile(np.arange(per_id), num_ids)
    base = rng.normal(size=(num_ids, 3, 4, 5)).astype(np.float32)
    # noisy enough that the ranking is imperfect (Rank-1 and mAP below 100)
    images = base[pids] + 0.5 * rng.normal(size=(pids.size, 3, 4, 5)).astype(np.float32)
    order = np.concatenate([np.nonzero(cams == 0)[0], np.nonzero(cams != 0)[0]])
    images, pids, cams = images[order], pids[order], cams[order]
    batches = [(ms.Tensor(images[s:s + 5]), pids[s:s + 5], cams[s:s + 5])
               for s in range(0, len(pids), 5)]

    class Collect(ReidEvaluator):
        def evaluate(self):
            self.feats = np.concatenate(self._features["global"])
            return super().evaluate()

    cfg = plain_cfg()
    model = FakeModel()
    ev = Collect(cfg, num_ids)
    logger = logging.getLogger("fastreid_ms")
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="fastreid_ms"):
        res = inference_on_dataset(model, batches, ev, flip=False)
    assert model.train_mode is False
    assert any("images/s" in r.getMessage() and "ETA" in r.getMessage() for r in caplog.records)
    w = np.linspace(1.0, 2.0, 5, dtype=np.float32)
    expected = (images * w).mean(axis=(1, 2))
    np.testing.assert_allclose(ev.feats, expected, rtol=1e-5)
    # the returned metrics are those of these features (slow reference)
    q, g = expected[:num_ids], expected[num_ids:]
    assert list(res) == list(METRIC_NAMES)
    assert_metrics_equal(res, reference_metrics(reference_distance(q, g), pids, cams, num_ids))
    assert res["mAP"] < 99.0

    ev2 = Collect(cfg, num_ids)
    res2 = inference_on_dataset(model, batches, ev2, flip=True)
    expected = 0.5 * ((images * w).mean(axis=(1, 2)) + (images[..., ::-1] * w).mean(axis=(1, 2)))
    np.testing.assert_allclose(ev2.feats, expected, rtol=1e-5, atol=1e-6)
    q, g = expected[:num_ids], expected[num_ids:]
    assert_metrics_equal(res2, reference_metrics(reference_distance(q, g), pids, cams, num_ids))


def test_results_table_rows():
    res = {"Rank-1": 91.7, "Rank-5": 97.4, "Rank-10": 98.6, "Rank-20": 99.3, "mAP": 79.2,
           "mINP": 40.1}
    table = results_table(res)
    lines = table.splitlines()
    assert len(lines) == 3 and "Rank-1" in lines[0] and "91.70" in lines[2]
    assert "RK" not in table
    res.update({"RK " + k: v + 1 for k, v in list(res.items())})
    lines = results_table(res).splitlines()
    assert len(lines) == 4 and lines[3].startswith("| RK") and "80.20" in lines[3]
