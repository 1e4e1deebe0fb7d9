"""Losses against slow NumPy references: label-smoothed CE, batch-hard / soft-mined triplet
(which positive and negative, and the value), center loss, the AlignedReID++ local triplet."""
import os

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms

from fastreid_ms.config import get_cfg
from fastreid_ms.modeling.losses import (LOSS_REGISTRY, CenterLoss, CrossEntropyLoss,
                                         TripletLoss, batch_hard_triplet, hard_example_mining,
                                         pairwise_euclidean, weighted_example_mining)
from projects.AlignedReIDpp.alignedreidpp.local_triplet import (AlignedLocalTripletLoss,
                                                                aligned_local_triplet)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("pynative")


def T(a):
    return ms.Tensor(np.asarray(a))


# ----------------------------------------------------------------------------- references
def ref_smoothed_ce(logits, targets, eps):
    total = 0.0
    n, k = logits.shape
    for i in range(n):
        row = logits[i].astype(np.float64)
        log_p = row - (np.log(np.sum(np.exp(row - row.max()))) + row.max())
        for c in range(k):
            q = (1.0 - eps) * (c == targets[i]) + eps / k
            total -= q * log_p[c]
    return total / n


def ref_dist(x):
    n = x.shape[0]
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            d[i, j] = np.sqrt(max(np.sum((x[i].astype(np.float64) - x[j]) ** 2), 1e-12))
    return d


def ref_hard_mining(x, targets):
    """Per anchor: (index, distance) of the farthest same-id image (itself included) and of the
    closest other-id image (None when there is none)."""
    d = ref_dist(x)
    out = []
    for i in range(len(targets)):
        pos = [j for j in range(len(targets)) if targets[j] == targets[i]]
        neg = [j for j in range(len(targets)) if targets[j] != targets[i]]
        jp = max(pos, key=lambda j: d[i, j])
        jn = min(neg, key=lambda j: d[i, j]) if neg else None
        out.append((jp, d[i, jp], jn, d[i, jn] if neg else None, len(pos) > 1 and bool(neg)))
    return out


def ref_triplet(x, targets, margin):
    terms = []
    for jp, dp, jn, dn, ok in ref_hard_mining(x, targets):
        if not ok:
            continue
        terms.append(max(dp - dn + margin, 0.0) if margin > 0 else np.log1p(np.exp(dp - dn)))
    return float(np.mean(terms)) if terms else 0.0


def ref_dmli(a, b):
    p, q = a.shape[0], b.shape[0]
    cost = np.zeros((p, q))
    for i in range(p):
        for j in range(q):
            d = np.sqrt(max(np.sum((a[i].astype(np.float64) - b[j]) ** 2), 1e-12))
            cost[i, j] = (np.exp(d) - 1) / (np.exp(d) + 1)
    acc = np.zeros((p, q))
    for i in range(p):
        for j in range(q):
            prev = [acc[i - 1, j]] if i else []
            prev += [acc[i, j - 1]] if j else []
            acc[i, j] = cost[i, j] + (min(prev) if prev else 0.0)
    return acc[-1, -1]


# ----------------------------------------------------------------------------- cross entropy
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothed_cross_entropy(eps):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(6, 5)) * 3).astype(np.float32)
    targets = np.array([0, 4, 2, 2, 1, 3], dtype=np.int32)
    loss = CrossEntropyLoss(epsilon=eps, scale=2.0)({"cls_logits": T(logits)}, T(targets))
    np.testing.assert_allclose(float(loss.asnumpy()), 2.0 * ref_smoothed_ce(logits, targets, eps),
                               rtol=1e-5)


def test_cross_entropy_from_config_and_bad_epsilon():
    cfg = get_cfg()
    loss = CrossEntropyLoss(cfg)
    assert loss.epsilon == pytest.approx(0.1) and loss.scale == 1.0
    assert CrossEntropyLoss.loss_name == "loss_cls"
    with pytest.raises(ValueError, match="EPSILON"):
        CrossEntropyLoss(epsilon=1.5)


# ----------------------------------------------------------------------------- triplet
def test_hard_example_mining_picks_the_reference_pairs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 6)).astype(np.float32)
    targets = np.array([3, 3, 3, 0, 0, 0, 7, 7, 7, 1, 1, 1], dtype=np.int32)
    dist_ap, dist_an, idx_ap, idx_an, valid = hard_example_mining(
        pairwise_euclidean(T(x), T(x)), T(targets))
    ref = ref_hard_mining(x, targets)
    assert list(idx_ap.asnumpy()) == [r[0] for r in ref]
    assert list(idx_an.asnumpy()) == [r[2] for r in ref]
    np.testing.assert_allclose(dist_ap.asnumpy(), [r[1] for r in ref], rtol=1e-4)
    np.testing.assert_allclose(dist_an.asnumpy(), [r[3] for r in ref], rtol=1e-4)
    assert list(valid.asnumpy()) == [1.0] * 12


@pytest.mark.parametrize("margin", [0.3, 1.0, 0.0])
def test_batch_hard_triplet_value(margin):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    targets = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3], dtype=np.int32)
    loss = TripletLoss(margin=margin, scale=0.5)({"global": T(x)}, T(targets))
    np.testing.assert_allclose(float(loss.asnumpy()), 0.5 * ref_triplet(x, targets, margin),
                               rtol=1e-4, atol=1e-6)


def test_triplet_norm_feat_uses_unit_vectors():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(8, 5)) * 4).astype(np.float32)
    targets = np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.int32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = batch_hard_triplet(T(x), T(targets), 0.3, norm_feat=True)
    np.testing.assert_allclose(float(out.asnumpy()), ref_triplet(unit, targets, 0.3), rtol=1e-4)


def test_weighted_mining_against_reference():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    targets = np.array([0, 0, 0, 1, 1, 1], dtype=np.int32)
    d = ref_dist(x)
    ap_ref, an_ref = [], []
    for i in range(6):
        pos = targets == targets[i]
        wp = np.exp(d[i][pos] - d[i][pos].max())
        wn = np.exp(-d[i][~pos] - (-d[i][~pos]).max())
        ap_ref.append(np.sum(d[i][pos] * wp) / (wp.sum() + 1e-6))
        an_ref.append(np.sum(d[i][~pos] * wn) / (wn.sum() + 1e-6))
    ap, an, valid = weighted_example_mining(pairwise_euclidean(T(x), T(x)), T(targets))
    np.testing.assert_allclose(ap.asnumpy(), ap_ref, rtol=1e-4)
    np.testing.assert_allclose(an.asnumpy(), an_ref, rtol=1e-4)
    assert float(valid.asnumpy().sum()) == 6.0


@pytest.mark.parametrize("targets", [[5], [2, 2, 2, 2], [0, 1, 2, 3]])
def test_triplet_without_usable_anchor_is_zero_not_nan(targets):
    """One image, one identity, or all identities distinct: no anchor has both a positive and a
    negative, so the loss is 0 (and its gradient finite)."""
    rng = np.random.default_rng(5)
    x = T(rng.normal(size=(len(targets), 4)).astype(np.float32))
    t = T(np.array(targets, dtype=np.int32))
    for margin in (0.3, 0.0):
        loss_fn = TripletLoss(margin=margin)
        loss, grad = ms.value_and_grad(lambda f: loss_fn({"global": f}, t))(x)
        assert float(loss.asnumpy()) == 0.0
        assert np.all(np.isfinite(grad.asnumpy()))


def test_triplet_mixed_batch_averages_over_valid_anchors_only():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    targets = np.array([0, 0, 1, 1, 2], dtype=np.int32)  # anchor 4 has no positive
    loss = batch_hard_triplet(T(x), T(targets), 0.5)
    np.testing.assert_allclose(float(loss.asnumpy()), ref_triplet(x, targets, 0.5), rtol=1e-4)


# ----------------------------------------------------------------------------- center loss
def test_center_loss_value():
    rng = np.random.default_rng(7)
    loss_fn = CenterLoss(num_classes=4, feat_dim=3, scale=0.5)
    centers = loss_fn.centers.asnumpy()
    x = rng.normal(size=(6, 3)).astype(np.float32)
    targets = np.array([0, 3, 3, 1, 2, 0], dtype=np.int32)
    ref = np.mean([np.sum((x[i] - centers[targets[i]]) ** 2) for i in range(6)])
    out = loss_fn({"global": T(x)}, T(targets))
    np.testing.assert_allclose(float(out.asnumpy()), 0.5 * ref, rtol=1e-5)
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        CenterLoss(num_classes=0, feat_dim=3)


# ----------------------------------------------------------------------------- local triplet
def ref_local_triplet(g, local, targets, margin):
    terms = []
    for i, (jp, _, jn, _, ok) in enumerate(ref_hard_mining(g, targets)):
        if not ok:
            continue
        dp, dn = ref_dmli(local[i], local[jp]), ref_dmli(local[i], local[jn])
        terms.append(max(dp - dn + margin, 0.0) if margin > 0 else np.log1p(np.exp(dp - dn)))
    return float(np.mean(terms)) if terms else 0.0


@pytest.mark.parametrize("margin", [0.3, 0.0])
def test_local_triplet_value(margin):
    rng = np.random.default_rng(8)
    g = rng.normal(size=(8, 6)).astype(np.float32)
    local = rng.normal(size=(8, 4, 5)).astype(np.float32)
    local /= np.linalg.norm(local, axis=2, keepdims=True)
    targets = np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.int32)
    loss_fn = AlignedLocalTripletLoss(margin=margin, scale=2.0)
    out = loss_fn({"global": T(g), "local": T(local)}, T(targets))
    np.testing.assert_allclose(float(out.asnumpy()),
                               2.0 * ref_local_triplet(g, local, targets, margin), rtol=1e-4)


def test_local_triplet_single_image_is_zero():
    rng = np.random.default_rng(9)
    out = aligned_local_triplet(T(rng.normal(size=(1, 4)).astype(np.float32)),
                                T(rng.normal(size=(1, 3, 2)).astype(np.float32)),
                                T(np.array([1], np.int32)), 0.3)
    assert float(out.asnumpy()) == 0.0


def test_losses_registered_with_names():
    import projects.AlignedReIDpp.alignedreidpp  # noqa: F401
    expected = {"CrossEntropyLoss": "loss_cls", "TripletLoss": "loss_triplet",
                "CenterLoss": "loss_center", "AlignedLocalTripletLoss": "loss_local"}
    for name, loss_name in expected.items():
        assert LOSS_REGISTRY.get(name).loss_name == loss_name
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Market1501", "alignedpp_R50.yml"))
    local = AlignedLocalTripletLoss(cfg)
    assert local.margin == pytest.approx(0.3) and local.scale == 1.0
