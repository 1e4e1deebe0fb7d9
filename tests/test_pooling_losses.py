"""Components of the strong baselines (BoT, AGW, SBS), each against a slow reference written
here: pooling layers (GeM against its formula), the BNNeck head's train / test features and
its cosine classifier, circle losses and the weighted regularized / soft-margin triplet
against loops, the non-local block and IBN-a against NumPy forwards, IBN-a ImageNet loading,
the warm-up-in-iterations / delayed cosine / freeze schedules, and AutoAugment."""
import math
import os

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms

from fastreid_ms.config import get_cfg
from fastreid_ms.modeling.backbones.resnet import IBN, NonLocalBlock, ResNet
from fastreid_ms.modeling.heads import EmbeddingHead
from fastreid_ms.modeling.heads.pooling import POOLING_REGISTRY, build_pooling
from fastreid_ms.modeling.losses import (LOSS_REGISTRY, CircleLoss, CircleSoftmaxLoss,
                                         TripletLoss, circle_logits)

pytestmark = pytest.mark.usefixtures("pynative")
RNG = np.random.RandomState(0)
T = ms.Tensor


def _np(x):
    return x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)


# ----------------------------------------------------------------------------- pooling


def test_pooling_registry_and_gem_formula():
    assert {"GlobalAvgPool", "GlobalMaxPool", "GeneralizedMeanPooling", "GeneralizedMeanPoolingP",
            "AdaptiveAvgMaxPool"} <= set(POOLING_REGISTRY.names())
    x = RNG.randn(2, 3, 4, 5).astype(np.float32)
    for p in (1.0, 3.0, 6.5):
        got = _np(build_pooling("GeneralizedMeanPooling", p=p)(T(x)))
        want = np.empty((2, 3))
        for n in range(2):
            for c in range(3):
                v = np.maximum(x[n, c].astype(np.float64), 1e-6)
                want[n, c] = np.mean(v ** p) ** (1.0 / p)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    learnt = build_pooling("GeneralizedMeanPoolingP", p=3.0)
    assert [q.name for q in learnt.trainable_params()] == ["p"]
    np.testing.assert_allclose(_np(learnt(T(x))), _np(build_pooling("gempool", p=3.0)(T(x))), rtol=1e-6)
    np.testing.assert_allclose(_np(build_pooling("avgpool")(T(x))), x.mean(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_allclose(_np(build_pooling("maxpool")(T(x))), x.max(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_allclose(_np(build_pooling("AdaptiveAvgMaxPool")(T(x))),
                               x.mean(axis=(2, 3)) + x.max(axis=(2, 3)), rtol=1e-5)
    with pytest.raises(ValueError, match="POOL_LAYER 'median' is not supported; use one of"):
        build_pooling("median")
    with pytest.raises(ValueError, match="GEM_P must be > 0"):
        build_pooling("GeneralizedMeanPooling", p=0)


# ----------------------------------------------------------------------------- BNNeck head


def _bn_eval(x, bn):
    g, b = _np(bn.gamma), _np(bn.beta)
    mm, mv = _np(bn.moving_mean), _np(bn.moving_variance)
    return (x - mm) / np.sqrt(mv + bn.eps) * g + b


def _randomize_bn(bn, rng):
    c = bn.gamma.shape[0]
    bn.gamma.set_data(T(rng.uniform(0.5, 1.5, c).astype(np.float32)))
    bn.beta.set_data(T(rng.uniform(-0.5, 0.5, c).astype(np.float32)))
    bn.moving_mean.set_data(T(rng.uniform(-0.5, 0.5, c).astype(np.float32)))
    bn.moving_variance.set_data(T(rng.uniform(0.5, 2.0, c).astype(np.float32)))


@pytest.mark.parametrize("triplet_feat", ["before", "after"])
def test_bnneck_train_and_test_features(triplet_feat):
    rng = np.random.RandomState(1)
    head = EmbeddingHead(feat_dim=6, num_classes=4, with_bnneck=True, neck_feat="after",
                         pool_layer="GeneralizedMeanPooling", gem_p=3.0, triplet_feat=triplet_feat)
    assert not hasattr(head.classifier, "bias") or head.classifier.bias is None
    assert head.bnneck.beta.requires_grad is False
    _randomize_bn(head.bnneck, rng)
    x = rng.rand(5, 6, 3, 2).astype(np.float32) + 0.1
    pooled = np.mean(np.maximum(x, 1e-6) ** 3, axis=(2, 3)) ** (1 / 3)
    head.set_train(False)
    np.testing.assert_allclose(_np(head(T(x))["global"]), _bn_eval(pooled, head.bnneck), rtol=1e-4, atol=1e-5)
    head.set_train(True)
    out = head(T(x))
    # Training BN: batch statistics (biased variance); the classifier reads its output.
    bn_train = (pooled - pooled.mean(0)) / np.sqrt(pooled.var(0) + 1e-5) * _np(head.bnneck.gamma) \
        + _np(head.bnneck.beta)
    np.testing.assert_allclose(_np(out["cls_logits"]), bn_train @ _np(head.classifier.weight).T,
                               rtol=1e-3, atol=1e-4)
    want_metric = pooled if triplet_feat == "before" else bn_train
    np.testing.assert_allclose(_np(out["global"]), want_metric, rtol=1e-3, atol=1e-4)


def test_cosine_classifier_head_and_config_check():
    rng = np.random.RandomState(2)
    head = EmbeddingHead(feat_dim=6, num_classes=3, with_bnneck=True, cls_layer="CircleSoftmax")
    head.set_train(True)
    x = rng.rand(4, 6, 2, 2).astype(np.float32)
    out = head(T(x))
    assert set(out) == {"cls_cosine", "global"}
    pooled = x.mean(axis=(2, 3))
    neck = (pooled - pooled.mean(0)) / np.sqrt(pooled.var(0) + 1e-5)
    w = _np(head.classifier.weight)
    want = (neck / np.linalg.norm(neck, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    np.testing.assert_allclose(_np(out["cls_cosine"]), want, rtol=1e-3, atol=1e-4)
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.HEADS.CLS_LAYER", "CircleSoftmax", "MODEL.BACKBONE.FEAT_DIM", 6])
    with pytest.raises(ValueError, match="replace CrossEntropyLoss in MODEL.LOSSES.NAME by CircleSoftmaxLoss"):
        EmbeddingHead(cfg)
    with pytest.raises(ValueError, match="TRIPLET_FEAT must be 'before' or 'after'"):
        EmbeddingHead(feat_dim=4, triplet_feat="middle")


# ----------------------------------------------------------------------------- losses


def _log_softmax(v):
    v = v - v.max()
    return v - math.log(np.exp(v).sum())


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_circle_softmax_against_loops(epsilon):
    rng = np.random.RandomState(3)
    n, k, s, m = 6, 5, 64.0, 0.35
    cosine = rng.uniform(-1, 1, (n, k)).astype(np.float32)
    targets = rng.randint(0, k, n).astype(np.int32)
    want_logits = np.zeros((n, k))
    total = 0.0
    for i in range(n):
        for j in range(k):
            c = float(cosine[i, j])
            if j == targets[i]:
                want_logits[i, j] = s * max(0.0, 1 + m - c) * (c - (1 - m))
            else:
                want_logits[i, j] = s * max(0.0, c + m) * (c - m)
        logp = _log_softmax(want_logits[i])
        for j in range(k):
            q = (1 - epsilon) * (j == targets[i]) + epsilon / k
            total -= q * logp[j]
    np.testing.assert_allclose(_np(circle_logits(T(cosine), T(targets), s, m)), want_logits, rtol=1e-4, atol=1e-3)
    loss = CircleSoftmaxLoss(gamma=s, margin=m, epsilon=epsilon, scale=0.5)
    got = float(_np(loss({"cls_cosine": T(cosine)}, T(targets))))
    assert got == pytest.approx(0.5 * total / n, rel=1e-4)
    assert LOSS_REGISTRY.get("CircleSoftmaxLoss") is CircleSoftmaxLoss


def test_pairwise_circle_loss_against_loops():
    rng = np.random.RandomState(4)
    feats = rng.randn(8, 5).astype(np.float32)
    targets = np.array([0, 0, 1, 1, 2, 2, 3, 9], np.int32)  # 9: no positive -> not an anchor
    gamma, m = 32.0, 0.25
    x = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    per = []
    for i in range(8):
        lp, ln = [], []
        for j in range(8):
            s = float(x[i] @ x[j])
            if j != i and targets[j] == targets[i]:
                lp.append(-gamma * max(0.0, 1 + m - s) * (s - (1 - m)))
            elif targets[j] != targets[i]:
                ln.append(gamma * max(0.0, s + m) * (s - m))
        if lp and ln:
            z = np.logaddexp.reduce(lp) + np.logaddexp.reduce(ln)
            per.append(np.logaddexp(0.0, z))
    got = float(_np(CircleLoss(gamma=gamma, margin=m)({"global": T(feats)}, T(targets))))
    assert got == pytest.approx(np.mean(per), rel=1e-4)
    alone = float(_np(CircleLoss()({"global": T(feats[:1])}, T(targets[:1]))))
    assert alone == 0.0


def _dist(x):
    return np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 1e-12))


def test_weighted_regularized_triplet_against_loops():
    """AGW's loss: TripletLoss with HARD_MINING False and MARGIN 0 (soft margin)."""
    rng = np.random.RandomState(5)
    feats = rng.randn(8, 4).astype(np.float32)
    targets = np.array([0, 0, 0, 1, 1, 2, 2, 2], np.int32)
    d = _dist(feats.astype(np.float64))
    per = []
    for i in range(8):
        pos = [j for j in range(8) if targets[j] == targets[i]]
        neg = [j for j in range(8) if targets[j] != targets[i]]
        wp = np.exp([d[i, j] - max(d[i, q] for q in pos) for j in pos])
        wn = np.exp([-d[i, j] - max(-d[i, q] for q in neg) for j in neg])
        ap = sum(w * d[i, j] for w, j in zip(wp, pos)) / (wp.sum() + 1e-6)
        an = sum(w * d[i, j] for w, j in zip(wn, neg)) / (wn.sum() + 1e-6)
        per.append(math.log1p(math.exp(ap - an)))
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.LOSSES.TRI.HARD_MINING", False, "MODEL.LOSSES.TRI.MARGIN", 0.0])
    got = float(_np(TripletLoss(cfg)({"global": T(feats)}, T(targets))))
    assert got == pytest.approx(np.mean(per), rel=1e-4)


def test_soft_margin_batch_hard_triplet_against_loops():
    """SBS's triplet: batch-hard mining, MARGIN 0 = log(1 + exp(d_ap - d_an))."""
    rng = np.random.RandomState(6)
    feats = rng.randn(6, 3).astype(np.float32)
    targets = np.array([0, 0, 1, 1, 2, 2], np.int32)
    d = _dist(feats.astype(np.float64))
    per = []
    for i in range(6):
        ap = max(d[i, j] for j in range(6) if targets[j] == targets[i])
        an = min(d[i, j] for j in range(6) if targets[j] != targets[i])
        per.append(math.log1p(math.exp(ap - an)))
    got = float(_np(TripletLoss(margin=0.0, hard_mining=True)({"global": T(feats)}, T(targets))))
    assert got == pytest.approx(np.mean(per), rel=1e-4)


# ----------------------------------------------------------------------------- backbone parts


def _conv1x1(x, conv):
    w = _np(conv.weight)[:, :, 0, 0]
    y = np.einsum("oc,nchw->nohw", w, x)
    if conv.has_bias:
        y = y + _np(conv.bias)[None, :, None, None]
    return y


def test_non_local_block_against_numpy():
    rng = np.random.RandomState(7)
    block = NonLocalBlock(8, reduction=2, convention="torchvision")
    assert np.all(_np(block.W[1].gamma) == 0) and np.all(_np(block.W[1].beta) == 0)
    x = rng.randn(2, 8, 3, 4).astype(np.float32)
    block.set_train(False)
    np.testing.assert_allclose(_np(block(T(x))), x, rtol=1e-6, atol=1e-6)  # fresh block: identity
    for cell in (block.g, block.theta, block.phi, block.W[0]):
        cell.weight.set_data(T(rng.randn(*cell.weight.shape).astype(np.float32) * 0.3))
        cell.bias.set_data(T(rng.randn(*cell.bias.shape).astype(np.float32) * 0.1))
    _randomize_bn(block.W[1], rng)
    g, th, ph = (_conv1x1(x, c) for c in (block.g, block.theta, block.phi))
    n, _, h, w = x.shape
    want = np.empty_like(x)
    for b in range(n):
        gi, ti, pi = (a[b].reshape(4, h * w) for a in (g, th, ph))
        f = np.zeros((h * w, h * w))
        for i in range(h * w):
            for j in range(h * w):
                f[i, j] = ti[:, i] @ pi[:, j] / (h * w)
        y = (f @ gi.T).T.reshape(1, 4, h, w)
        wy = _conv1x1(y, block.W[0])
        bn = block.W[1]
        wy = (wy - _np(bn.moving_mean)[None, :, None, None]) / np.sqrt(
            _np(bn.moving_variance)[None, :, None, None] + bn.eps) * _np(bn.gamma)[None, :, None, None] \
            + _np(bn.beta)[None, :, None, None]
        want[b] = wy[0] + x[b]
    np.testing.assert_allclose(_np(block(T(x))), want, rtol=1e-4, atol=1e-4)


def test_ibn_against_numpy():
    rng = np.random.RandomState(8)
    ibn = IBN(6, convention="torchvision")
    ibn.IN.gamma.set_data(T(rng.uniform(0.5, 1.5, 3).astype(np.float32)))
    ibn.IN.beta.set_data(T(rng.uniform(-1, 1, 3).astype(np.float32)))
    _randomize_bn(ibn.BN, rng)
    ibn.set_train(False)
    x = rng.randn(2, 6, 4, 3).astype(np.float32) * 2 + 1
    want = np.empty_like(x)
    for n in range(2):
        for c in range(3):
            v = x[n, c]
            want[n, c] = (v - v.mean()) / np.sqrt(v.var() + 1e-5) * _np(ibn.IN.gamma)[c] + _np(ibn.IN.beta)[c]
        for c in range(3, 6):
            bn = ibn.BN
            k = c - 3
            want[n, c] = (x[n, c] - _np(bn.moving_mean)[k]) / np.sqrt(_np(bn.moving_variance)[k] + bn.eps) \
                * _np(bn.gamma)[k] + _np(bn.beta)[k]
    np.testing.assert_allclose(_np(ibn(T(x))), want, rtol=1e-4, atol=1e-4)


def test_resnet_options_keep_the_resnet_names():
    plain = [n for n, _ in ResNet(18, 1, base_width=8).parameters_and_names()]
    nl = [n for n, _ in ResNet(18, 1, base_width=8, nl_layers=[0, 2, 1, 0]).parameters_and_names()]
    assert [n for n in nl if not n.startswith("nl_layer")] == plain
    assert sorted({n.split(".")[0] + "." + n.split(".")[1] for n in nl if n.startswith("nl_")}) == \
        ["nl_layer2.0", "nl_layer2.1", "nl_layer3.0"]
    ibn = ResNet(18, 1, base_width=8, with_ibn=True)
    names = [n for n, _ in ibn.parameters_and_names()]
    assert "layer1.0.bn1.IN.gamma" in names and "layer3.1.bn1.BN.moving_mean" in names
    assert "layer4.0.bn1.gamma" in names and not any(n.startswith("layer4") and ".IN." in n for n in names)
    with pytest.raises(ValueError, match="asks for 3 non-local blocks in stage 3, which has only 2"):
        ResNet(18, 1, base_width=8, nl_layers=[0, 2, 3, 0])


def test_ibn_imagenet_weights_load_and_missing_file_is_named(tmp_path):
    """IBN-Net's ResNet-IBN-a names (torchvision style, bn1.IN.weight / bn1.BN.running_mean)
    load through the existing loader; a missing file names the path."""
    from fastreid_ms.modeling.backbones.pretrained import (PretrainedWeightsMissing,
                                                            check_pretrained_weights,
                                                            load_imagenet_weights, torchvision_to_ours)
    net = ResNet(18, 1, base_width=8, convention="torchvision", with_ibn=True)
    ours = dict((n, p) for n, p in net.parameters_and_names())
    rng = np.random.RandomState(9)
    state = {}
    for name, p in ours.items():
        tv = name.replace(".gamma", ".weight").replace(".beta", ".bias").replace(
            ".moving_mean", ".running_mean").replace(".moving_variance", ".running_var").replace(
            ".down_sample_layer.", ".downsample.")
        state[tv] = rng.randn(*p.shape).astype(np.float32)
    state["fc.weight"] = np.zeros((10, 64), np.float32)
    assert "layer1.0.bn1.IN.weight" in state and "layer2.1.bn1.BN.running_var" in state
    path = str(tmp_path / "resnet18_ibn_a.npz")
    np.savez(path, **state)
    report = load_imagenet_weights(net, path)
    assert not report.missing and not report.mismatched and not report.unexpected
    np.testing.assert_array_equal(_np(ours["layer1.0.bn1.IN.gamma"]), state["layer1.0.bn1.IN.weight"])
    assert torchvision_to_ours("layer1.0.bn1.BN.running_mean") == "layer1.0.bn1.BN.moving_mean"
    assert torchvision_to_ours("layer1.0.bn1.IN.weight") == "layer1.0.bn1.IN.gamma"  # convert_torchvision.py
    cfg = get_cfg()
    missing = str(tmp_path / "resnet50_ibn_a-d9d0bb7b.npz")
    cfg.merge_from_list(["MODEL.BACKBONE.WITH_IBN", True, "MODEL.BACKBONE.PRETRAIN", True,
                         "MODEL.BACKBONE.PRETRAIN_PATH", missing])
    with pytest.raises(PretrainedWeightsMissing, match="resnet50_ibn_a-d9d0bb7b.npz does not exist"):
        check_pretrained_weights(cfg)


# ----------------------------------------------------------------------------- solver


def test_warmup_iters_delay_and_freeze():
    from fastreid_ms.solver import build_lr_scheduler, build_param_groups
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.SCHED", "CosineAnnealingLR", "SOLVER.BASE_LR", 1.0,
                         "SOLVER.WARMUP_ITERS", 5, "SOLVER.WARMUP_FACTOR", 0.1,
                         "SOLVER.WARMUP_EPOCHS", 6, "SOLVER.DELAY_EPOCHS", 2,
                         "SOLVER.ETA_MIN_LR", 0.0, "SOLVER.MAX_EPOCH", 4])
    table = build_lr_scheduler(cfg, iters_per_epoch=4)  # 16 iterations
    want = [0.1 + 0.9 * (i + 1) / 5 for i in range(5)] + [1.0] * 3 + \
        [(1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)]
    np.testing.assert_allclose(table, want, rtol=1e-12)
    cfg.merge_from_list(["SOLVER.SCHED", "MultiStepLR", "SOLVER.STEPS", [3], "SOLVER.GAMMA", 0.5])
    table = build_lr_scheduler(cfg, iters_per_epoch=4)
    np.testing.assert_allclose(table[5:], [1.0] * 7 + [0.5] * 4)

    from mindspore import nn

    class Toy(nn.Cell):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Dense(2, 2)
            self.heads = nn.Dense(2, 2)

    groups = build_param_groups(Toy(), cfg.SOLVER, np.ones(10), freeze_layers=["backbone"], freeze_iters=3)
    by_name = {p.name: g for g in groups for p in g["params"]}
    frozen = _np(by_name["backbone.weight"]["lr"].table)
    np.testing.assert_array_equal(frozen, [0, 0, 0] + [1] * 7)
    np.testing.assert_array_equal(_np(by_name["heads.weight"]["lr"].table), np.ones(10))
    assert len(build_param_groups(Toy(), cfg.SOLVER, np.ones(10), ["backbone"], 0)) == \
        len(build_param_groups(Toy(), cfg.SOLVER, np.ones(10)))
    with pytest.raises(ValueError, match=r"MODEL.FREEZE_LAYERS names \['neck'\]"):
        build_param_groups(Toy(), cfg.SOLVER, np.ones(10), freeze_layers=["neck"], freeze_iters=3)


# ----------------------------------------------------------------------------- AutoAugment


def test_autoaugment_ops_and_pipeline():
    from fastreid_ms.data.transforms import build_transforms
    from fastreid_ms.data.transforms.autoaugment import IMAGENET_POLICY, AutoAugment, apply_op
    from PIL import Image
    img = (np.random.RandomState(10).rand(16, 8, 3) * 255).astype(np.uint8)
    names = {op for sub in IMAGENET_POLICY for op, _, _ in sub}
    assert len(IMAGENET_POLICY) == 25 and names == {
        "Posterize", "Rotate", "Solarize", "AutoContrast", "Equalize", "Color", "Invert",
        "Contrast", "Sharpness", "ShearX"}
    rng = np.random.default_rng(0)
    for name in sorted(names):
        out = np.asarray(apply_op(Image.fromarray(img), name, 8, rng))
        assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(apply_op(Image.fromarray(img), "Invert", 5, rng)), 255 - img)
    solar = np.asarray(apply_op(Image.fromarray(img), "Solarize", 5, rng))
    np.testing.assert_array_equal(solar, np.where(img >= 128, 255 - img, img))
    always = AutoAugment(prob=1.0)
    a = always(img, np.random.default_rng(3))
    b = always(img, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert AutoAugment(prob=0.0)(img, np.random.default_rng(3)) is img
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.AUTOAUG.ENABLED", True, "INPUT.AUTOAUG.PROB", 0.1,
                         "INPUT.SIZE_TRAIN", [16, 8]])
    pipeline = build_transforms(cfg, is_train=True)
    assert isinstance(pipeline.transforms[0], AutoAugment)
    assert pipeline(img, np.random.default_rng(1)).shape == (3, 16, 8)
    with pytest.raises(ValueError, match="INPUT.AUTOAUG.PROB must be in"):
        AutoAugment(prob=2)
