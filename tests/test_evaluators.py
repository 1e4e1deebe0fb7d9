"""ReidEvaluator, inference_on_dataset and results_table (the AlignedReID++ evaluator is in
test_dmli_eval.py)."""
import logging

import numpy as np
import pytest

from fastreid_ms.config import get_cfg
from fastreid_ms.evaluation import (EVALUATOR_REGISTRY, ReidEvaluator, build_evaluator,
                                    evaluate_rank, inference_on_dataset, re_ranking,
                                    results_table)
from fastreid_ms.evaluation.distance import compute_distance, compute_distance_symmetric
from fastreid_ms.evaluation.reid_evaluation import METRIC_NAMES, average_query_expansion


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


def run_evaluator(cfg, feats, pids, cams, nq, batch=7, name="ReidEvaluator"):
    cfg.TEST.EVALUATOR = name
    ev = build_evaluator(cfg, nq)
    ev.reset()
    for s in range(0, len(pids), batch):
        ev.process({k: v[s:s + batch] for k, v in feats.items()}, pids[s:s + batch],
                   cams[s:s + batch])
    return ev.evaluate()


def test_reid_evaluator_matches_evaluate_rank_in_percent():
    feats, pids, cams, nq = make_set()
    cfg = get_cfg()
    res = run_evaluator(cfg, {"global": feats}, pids, cams, nq)
    assert list(res) == list(METRIC_NAMES)
    keep = pids != -1
    f, p, c = feats[keep], pids[keep], cams[keep]
    dist = compute_distance(f[:nq], f[nq:])
    cmc, mAP, mINP = evaluate_rank(dist, p[:nq], p[nq:], c[:nq], c[nq:])
    assert res["Rank-1"] == pytest.approx(cmc[0] * 100)
    assert res["Rank-10"] == pytest.approx(cmc[9] * 100)
    assert res["mAP"] == pytest.approx(mAP * 100)
    assert res["mINP"] == pytest.approx(mINP * 100)
    assert 0 <= res["mAP"] <= 100 and res["Rank-20"] >= res["Rank-1"]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("candidates", [0, 30])
def test_reid_evaluator_rerank_equals_dense_re_ranking(metric, candidates):
    feats, pids, cams, nq = make_set(seed=1)
    cfg = get_cfg()
    cfg.TEST.METRIC = metric
    cfg.TEST.RERANK.ENABLED = True
    cfg.TEST.RERANK.K1 = 8
    cfg.TEST.RERANK.K2 = 3
    cfg.TEST.RERANK.CANDIDATES = candidates
    cfg.TEST.BLOCK_SIZE = 16
    res = run_evaluator(cfg, {"global": feats}, pids, cams, nq)
    assert list(res) == list(METRIC_NAMES) + ["RK " + m for m in METRIC_NAMES]
    keep = pids != -1
    f, p, c = feats[keep], pids[keep], cams[keep]
    q, g = f[:nq], f[nq:]
    dense = re_ranking(compute_distance(q, g, metric), compute_distance_symmetric(q, metric),
                       compute_distance_symmetric(g, metric), k1=8, k2=3, lambda_value=0.3)
    cmc, mAP, mINP = evaluate_rank(dense, p[:nq], p[nq:], c[:nq], c[nq:])
    assert res["RK Rank-1"] == pytest.approx(cmc[0] * 100, abs=1e-6)
    assert res["RK mAP"] == pytest.approx(mAP * 100, abs=1e-4)
    assert res["RK mINP"] == pytest.approx(mINP * 100, abs=1e-4)


def test_aqe_blocked_equals_unblocked_and_changes_results():
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
    cfg = get_cfg()
    cfg.TEST.AQE.ENABLED = True
    cfg.TEST.AQE.QE_K = 3
    res = run_evaluator(cfg, {"global": feats}, pids, cams, nq)
    assert set(res) == set(METRIC_NAMES)


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
    images = base[pids] + 0.1 * rng.normal(size=(pids.size, 3, 4, 5)).astype(np.float32)
    order = np.concatenate([np.nonzero(cams == 0)[0], np.nonzero(cams != 0)[0]])
    images, pids, cams = images[order], pids[order], cams[order]
    batches = [(ms.Tensor(images[s:s + 5]), pids[s:s + 5], cams[s:s + 5])
               for s in range(0, len(pids), 5)]

    class Collect(ReidEvaluator):
        def evaluate(self):
            self.feats = np.concatenate(self._features["global"])
            return super().evaluate()

    cfg = get_cfg()
    model = FakeModel()
    ev = Collect(cfg, num_ids)
    logger = logging.getLogger("fastreid_ms")
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="fastreid_ms"):
        res = inference_on_dataset(model, batches, ev, flip=False)
    assert model.train_mode is False
    assert set(res) == set(METRIC_NAMES)
    assert any("images/s" in r.getMessage() and "ETA" in r.getMessage() for r in caplog.records)
    w = np.linspace(1.0, 2.0, 5, dtype=np.float32)
    np.testing.assert_allclose(ev.feats, (images * w).mean(axis=(1, 2)), rtol=1e-5)

    ev2 = Collect(cfg, num_ids)
    inference_on_dataset(model, batches, ev2, flip=True)
    expected = 0.5 * ((images * w).mean(axis=(1, 2)) + (images[..., ::-1] * w).mean(axis=(1, 2)))
    np.testing.assert_allclose(ev2.feats, expected, rtol=1e-5, atol=1e-6)


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
