"""PCB (projects/PCB): head shapes and values, its loss against a slow numpy version,
registration from the project folder only, and the model built from its demo config."""
import math
import os
import re

import fastreid_ms  # noqa: F401  (CPU kernel set-up before any convolution)
import mindspore as ms
import numpy as np
import pytest

from fastreid_ms.config import get_cfg
from fastreid_ms.modeling.heads.build import HEAD_REGISTRY
from fastreid_ms.modeling.losses.build import LOSS_REGISTRY
from projects.PCB.pcb import PCBCrossEntropyLoss, PCBHead, stripe_pool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CFG = os.path.join(ROOT, "projects", "PCB", "configs", "Demo", "pcb_demo.yml")


pytestmark = pytest.mark.usefixtures("pynative")


def _slow_stripe_means(x, num_stripes):
    """(N, C, H, W) -> (N, P, C): stripe i covers rows floor(i H / P) .. ceil((i+1) H / P) - 1."""
    n, c, h, _ = x.shape
    out = np.zeros((n, num_stripes, c), np.float64)
    for i in range(num_stripes):
        start = math.floor(i * h / num_stripes)
        end = math.ceil((i + 1) * h / num_stripes)
        for b in range(n):
            for ch in range(c):
                out[b, i, ch] = np.mean(x[b, ch, start:end, :].astype(np.float64))
    return out


def _slow_stripe_ce(logits, targets, epsilon):
    """sum over stripes of the batch-mean label-smoothed cross entropy, with plain loops."""
    n, p, k = logits.shape
    total = 0.0
    for s in range(p):
        stripe_loss = 0.0
        for b in range(n):
            row = logits[b, s].astype(np.float64)
            log_z = math.log(sum(math.exp(v) for v in row))
            for j in range(k):
                q = (1.0 - epsilon) * (j == targets[b]) + epsilon / k
                stripe_loss -= q * (row[j] - log_z)
        total += stripe_loss / n
    return total


def test_registered_from_the_project():
    assert HEAD_REGISTRY.get("PCBHead") is PCBHead
    assert LOSS_REGISTRY.get("PCBCrossEntropyLoss") is PCBCrossEntropyLoss
    cfg = get_cfg()
    assert cfg.MODEL.HEADS.NUM_STRIPES == 6 and cfg.MODEL.HEADS.STRIPE_DIM == 256
    assert cfg.MODEL.LOSSES.PCB_CE.EPSILON == 0.0


@pytest.mark.parametrize("height", [6, 7, 4])
def test_stripe_pool_matches_slow_version(height):
    rng = np.random.default_rng(height)
    x = rng.normal(size=(2, 3, height, 5)).astype(np.float32)
    got = stripe_pool(ms.Tensor(x), 3).asnumpy()
    assert got.shape == (2, 3, 3, 1)
    np.testing.assert_allclose(got[..., 0].transpose(0, 2, 1), _slow_stripe_means(x, 3),
                               rtol=1e-5, atol=1e-6)


def test_head_train_and_eval_outputs():
    rng = np.random.default_rng(0)
    n, c, h, w, p, d, k = 4, 16, 8, 3, 4, 6, 10
    x = rng.normal(size=(n, c, h, w)).astype(np.float32)
    head = PCBHead(feat_dim=c, num_classes=k, num_stripes=p, stripe_dim=d, test_feat="pooled")
    head.set_train(True)
    out = head(ms.Tensor(x))
    assert set(out) == {"stripe_logits", "global"}
    assert out["stripe_logits"].shape == (n, p, k)
    assert out["global"].shape == (n, p * d)

    head.set_train(False)
    pooled = head(ms.Tensor(x))
    assert set(pooled) == {"global"}
    # Concatenation of the stripes' pooled vectors g, top stripe first.
    np.testing.assert_allclose(pooled["global"].asnumpy(),
                               _slow_stripe_means(x, p).reshape(n, p * c), rtol=1e-5, atol=1e-6)


def test_head_reduced_test_feature_values():
    """h_i = ReLU(BN_eval(W g_i)) with the head's own (fresh) parameters."""
    rng = np.random.default_rng(1)
    n, c, h, w, p, d = 3, 8, 6, 2, 3, 5
    x = rng.normal(size=(n, c, h, w)).astype(np.float32)
    head = PCBHead(feat_dim=c, num_classes=0, num_stripes=p, stripe_dim=d, test_feat="reduced")
    head.set_train(False)
    got = head(ms.Tensor(x))["global"].asnumpy()
    assert got.shape == (n, p * d)
    weight = head.reduce.weight.asnumpy().reshape(d, c).astype(np.float64)
    gamma, beta = head.bn.gamma.asnumpy(), head.bn.beta.asnumpy()
    mean, var = head.bn.moving_mean.asnumpy(), head.bn.moving_variance.asnumpy()
    g = _slow_stripe_means(x, p)                             # (N, P, C)
    expected = np.zeros((n, p, d))
    for b in range(n):
        for s in range(p):
            z = weight @ g[b, s]
            z = (z - mean) / np.sqrt(var + 1e-5) * gamma + beta
            expected[b, s] = np.maximum(z, 0.0)
    np.testing.assert_allclose(got, expected.reshape(n, p * d), rtol=1e-4, atol=1e-5)


def test_head_rejects_bad_settings():
    with pytest.raises(ValueError, match="STRIPE_TEST_FEAT"):
        PCBHead(feat_dim=8, num_classes=2, test_feat="concat")
    with pytest.raises(ValueError, match="NUM_STRIPES"):
        PCBHead(feat_dim=8, num_classes=2, num_stripes=0)
    with pytest.raises(ValueError, match="feat_dim"):
        PCBHead(num_classes=2)


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_loss_matches_slow_numpy(epsilon):
    rng = np.random.default_rng(2)
    logits = (3.0 * rng.normal(size=(5, 6, 7))).astype(np.float32)
    targets = rng.integers(0, 7, size=5).astype(np.int32)
    loss = PCBCrossEntropyLoss(epsilon=epsilon, scale=0.5)
    assert loss.loss_name == "loss_stripe_cls"
    got = loss({"stripe_logits": ms.Tensor(logits)}, ms.Tensor(targets)).asnumpy()
    np.testing.assert_allclose(got, 0.5 * _slow_stripe_ce(logits, targets, epsilon), rtol=1e-5)


def test_loss_reads_its_config_keys():
    cfg = get_cfg()
    cfg.MODEL.LOSSES.PCB_CE.EPSILON = 0.2
    cfg.MODEL.LOSSES.PCB_CE.SCALE = 2.0
    loss = PCBCrossEntropyLoss(cfg)
    assert loss.epsilon == pytest.approx(0.2) and loss.scale == pytest.approx(2.0)
    cfg.MODEL.LOSSES.PCB_CE.EPSILON = 1.0
    with pytest.raises(ValueError, match="MODEL.LOSSES.PCB_CE.EPSILON"):
        PCBCrossEntropyLoss(cfg)


def test_core_package_does_not_mention_pcb():
    """PCB lives only in projects/PCB: the core package never names it."""
    pattern = re.compile(r"pcb", re.IGNORECASE)
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, "fastreid_ms")):
        for name in files:
            if not name.endswith((".py", ".yml", ".yaml", ".md", ".txt", ".json")):
                continue
            path = os.path.join(folder, name)
            with open(path, "r", encoding="utf-8", errors="ignore") as f:
                for lineno, line in enumerate(f, 1):
                    if pattern.search(line):
                        offenders.append(f"{os.path.relpath(path, ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "fastreid_ms/ mentions PCB:\n" + "\n".join(offenders)


def _demo_cfg(num_classes=8):
    cfg = get_cfg()
    cfg.merge_from_file(DEMO_CFG)
    cfg.merge_from_list(["MODEL.HEADS.NUM_CLASSES", num_classes])
    return cfg


def test_demo_config_builds_pcb_through_build_model():
    from fastreid_ms.modeling import build_model
    cfg = _demo_cfg(num_classes=8)
    assert cfg.PLUGINS == ["projects.PCB.pcb"]
    assert cfg.DATASETS.NAMES == ["Synthetic"]
    model = build_model(cfg)
    assert isinstance(model.heads, PCBHead)
    assert model.loss_names == ("loss_stripe_cls",)

    h, w = cfg.INPUT.SIZE_TRAIN
    rng = np.random.default_rng(3)
    images = ms.Tensor(rng.normal(size=(4, 3, h, w)).astype(np.float32))
    targets = ms.Tensor(np.array([0, 0, 5, 5], np.int32))
    model.set_train(True)
    losses = model(images, targets)
    assert set(losses) == {"loss_stripe_cls"}
    value = float(losses["loss_stripe_cls"].asnumpy())
    # Fresh classifiers (weights ~N(0, 0.001)) give near-uniform stripes: about P * ln(K).
    assert value == pytest.approx(6 * math.log(8), rel=0.1)

    model.set_train(False)
    feats = model(images)
    assert feats["global"].shape == (4, 6 * cfg.MODEL.BACKBONE.FEAT_DIM)


def test_feature_extraction_model_without_classes():
    from fastreid_ms.modeling import build_model
    cfg = _demo_cfg(num_classes=0)
    model = build_model(cfg)
    model.set_train(False)
    h, w = cfg.INPUT.SIZE_TEST
    feats = model(ms.Tensor(np.zeros((2, 3, h, w), np.float32)))
    assert feats["global"].shape == (2, 6 * cfg.MODEL.BACKBONE.FEAT_DIM)
