"""Baseline + heads: output shapes in train / eval for batch sizes 1, 7 and 32, errors,
gradients of the total loss, and a tiny AlignedReID++ model overfitting one synthetic batch
in GRAPH mode."""
import os

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms
from mindspore import nn, ops

from fastreid_ms.config import get_cfg
from fastreid_ms.modeling import Baseline, EmbeddingHead, ResNet, build_model
from fastreid_ms.modeling.losses import CenterLoss, CrossEntropyLoss, TripletLoss
from _builders import randomize_bn_stats  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "Market1501", "alignedpp_R50.yml")
NUM_CLASSES = 12
# ResNet-18 with BASE_WIDTH 16 -> 128 channels; 64x32 input with last stride 1 -> 4 x 2 map.
PARTS, FEAT_DIM, LOCAL_DIM = 4, 128, 32




def tiny_cfg(**overrides):
    """The Market1501 AlignedReID++ config with a tiny backbone."""
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.BACKBONE.DEPTH = 18
    cfg.MODEL.BACKBONE.BASE_WIDTH = 16
    cfg.MODEL.BACKBONE.FEAT_DIM = FEAT_DIM
    cfg.MODEL.BACKBONE.LAST_STRIDE = 1
    cfg.MODEL.HEADS.LOCAL_DIM = LOCAL_DIM
    cfg.MODEL.HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.merge_from_list([item for pair in overrides.items() for item in pair])
    return cfg


def batch(n, seed=0, ids_per_batch=None):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, 3, 64, 32)).astype(np.float32)
    k = ids_per_batch or max(1, n // 2)
    targets = (np.arange(n) % k).astype(np.int32)
    return ms.Tensor(images), ms.Tensor(targets)


def test_config_builds_the_alignedreidpp_baseline():
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    assert cfg.MODEL.HEADS.NAME == "AlignedReIDppHead"
    assert list(cfg.MODEL.LOSSES.NAME) == ["CrossEntropyLoss", "TripletLoss",
                                           "AlignedLocalTripletLoss"]
    assert cfg.MODEL.BACKBONE.DEPTH == 50 and cfg.INPUT.SIZE_TRAIN == [256, 128]
    assert cfg.SOLVER.MOMENTUM == pytest.approx(0.85) and cfg.SOLVER.NESTEROV
    assert cfg.TEST.EVALUATOR == "AlignedReIDEvaluator"
    model = build_model(tiny_cfg())
    assert isinstance(model, Baseline)
    assert model.loss_names == ("loss_cls", "loss_triplet", "loss_local")


@pytest.mark.parametrize("n", [1, 7, 32])
def test_alignedreidpp_shapes_train_and_eval(pynative, n):
    model = build_model(tiny_cfg())
    images, targets = batch(n)
    model.set_train(True)
    losses = model(images, targets)
    assert list(losses) == ["loss_cls", "loss_triplet", "loss_local"]
    for name, value in losses.items():
        assert value.shape == () and np.isfinite(float(value.asnumpy())), name
    outputs = model.heads(model.backbone(images))
    assert outputs["cls_logits"].shape == (n, NUM_CLASSES)
    assert outputs["global"].shape == (n, FEAT_DIM)
    assert outputs["local"].shape == (n, PARTS, LOCAL_DIM)
    np.testing.assert_allclose(np.linalg.norm(outputs["local"].asnumpy(), axis=2), 1.0, rtol=1e-4)

    model.set_train(False)
    feats = model(images)
    assert set(feats) == {"global", "local"}
    assert feats["global"].shape == (n, FEAT_DIM)
    assert feats["local"].shape == (n, PARTS, FEAT_DIM)


def test_batch_of_one_trains_with_zero_triplet_terms(pynative):
    """One image has no positive and no negative: both triplet terms are 0, never NaN."""
    model = build_model(tiny_cfg())
    model.set_train(True)
    losses = model(*batch(1))
    assert float(losses["loss_triplet"].asnumpy()) == 0.0
    assert float(losses["loss_local"].asnumpy()) == 0.0
    assert 0.0 < float(losses["loss_cls"].asnumpy()) < 10.0


def test_eval_local_features_follow_the_config(pynative):
    images, _ = batch(3)
    model = build_model(tiny_cfg())
    model.set_train(False)
    feats = model(images)
    fmap = model.backbone(images).asnumpy()                    # (N, C, P, W)
    ref = fmap.max(axis=3).transpose(0, 2, 1)
    ref = ref / np.sqrt(np.maximum((ref ** 2).sum(axis=2, keepdims=True), 1e-12))
    np.testing.assert_allclose(feats["local"].asnumpy(), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["global"].asnumpy(), fmap.mean(axis=(2, 3)), rtol=1e-4,
                               atol=1e-6)

    branch = build_model(tiny_cfg(**{"MODEL.HEADS.LOCAL_TEST_FEAT": "branch"}))
    branch.set_train(False)
    assert branch(images)["local"].shape == (3, PARTS, LOCAL_DIM)
    with pytest.raises(ValueError, match="LOCAL_TEST_FEAT"):
        build_model(tiny_cfg(**{"MODEL.HEADS.LOCAL_TEST_FEAT": "neck"}))


def numpy_l2_per_part(x):
    """(N, P, D) rows divided by their norm (1e-12 floor on the squared norm), float64."""
    return x / np.sqrt(np.maximum((x ** 2).sum(axis=2, keepdims=True), 1e-12))


@pytest.mark.parametrize("mode", ["branch", "backbone"])
def test_eval_local_feature_equals_numpy_forward(pynative, mode):
    """MODEL.HEADS.LOCAL_TEST_FEAT on a signed random map (N, C, P, W), against numpy:
    "branch" = the training local branch with eval-mode BN (moving statistics, random affine)
    -> ReLU -> max over the width -> 1x1 conv (+ bias) -> L2 per part, (N, P, LOCAL_DIM);
    "backbone" = the map max-pooled over the width, L2 per part, (N, P, C). The global feature
    is the map's mean either way."""
    head = build_model(tiny_cfg(**{"MODEL.HEADS.LOCAL_TEST_FEAT": mode})).heads
    randomize_bn_stats(head, seed=3)
    rng = np.random.default_rng(4)
    params = dict(head.parameters_and_names())
    # every parameter of the branch random and of similar weight (whatever the init config)
    for name, mean, std in (("local_bn.gamma", 1.0, 0.3), ("local_bn.beta", 0.0, 0.3),
                            ("local_conv.weight", 0.0, 0.1), ("local_conv.bias", 0.0, 0.1)):
        p = params[name]
        p.set_data(ms.Tensor(rng.normal(mean, std, p.shape).astype(np.float32)))
    head.set_train(False)
    fmap = rng.normal(size=(3, FEAT_DIM, PARTS, 3)).astype(np.float32)
    out = head(ms.Tensor(fmap))
    assert set(out) == {"global", "local"}
    np.testing.assert_allclose(out["global"].asnumpy(), fmap.mean(axis=(2, 3)), rtol=1e-5,
                               atol=1e-6)
    x = fmap.astype(np.float64)
    if mode == "branch":
        v = {k: p.asnumpy().astype(np.float64) for k, p in params.items()}
        scale = v["local_bn.gamma"] / np.sqrt(v["local_bn.moving_variance"] + 1e-5)
        y = ((x - v["local_bn.moving_mean"][None, :, None, None]) * scale[None, :, None, None]
             + v["local_bn.beta"][None, :, None, None])
        y = np.maximum(y, 0.0).max(axis=3)                                  # (N, C, P)
        w = v["local_conv.weight"].reshape(LOCAL_DIM, FEAT_DIM)
        ref = np.einsum("lc,ncp->npl", w, y) + v["local_conv.bias"][None, None, :]
        assert out["local"].shape == (3, PARTS, LOCAL_DIM)
    else:
        ref = x.max(axis=3).transpose(0, 2, 1)                              # (N, P, C)
        assert out["local"].shape == (3, PARTS, FEAT_DIM)
    np.testing.assert_allclose(out["local"].asnumpy(), numpy_l2_per_part(ref), rtol=1e-4,
                               atol=1e-5)


def test_no_classes_cannot_train_but_extracts_features(pynative):
    model = build_model(tiny_cfg(**{"MODEL.HEADS.NUM_CLASSES": 0}))
    model.set_train(False)
    assert model(batch(2)[0])["global"].shape == (2, FEAT_DIM)
    with pytest.raises(ValueError, match="NUM_CLASSES = 0"):
        model.set_train(True)


def test_feat_dim_mismatch_is_named():
    with pytest.raises(ValueError, match="set MODEL.BACKBONE.FEAT_DIM 128"):
        build_model(tiny_cfg(**{"MODEL.BACKBONE.FEAT_DIM": 2048}))


@pytest.mark.parametrize("n", [1, 7])
def test_embedding_head_baseline(pynative, n):
    head = EmbeddingHead(feat_dim=FEAT_DIM, num_classes=5, embedding_dim=16, with_bnneck=True,
                         neck_feat="after")
    model = Baseline(backbone=ResNet(18, base_width=16), heads=head,
                     losses=[CrossEntropyLoss(epsilon=0.1), TripletLoss(margin=0.3),
                             CenterLoss(num_classes=5, feat_dim=16)])
    images, targets = batch(n, ids_per_batch=3)
    model.set_train(True)
    losses = model(images, targets)
    assert list(losses) == ["loss_cls", "loss_triplet", "loss_center"]
    assert all(np.isfinite(float(v.asnumpy())) for v in losses.values())
    model.set_train(False)
    feats = model(images)
    assert list(feats) == ["global"] and feats["global"].shape == (n, 16)


def test_embedding_head_from_config():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.DEPTH = 18
    cfg.MODEL.BACKBONE.BASE_WIDTH = 16
    cfg.MODEL.BACKBONE.FEAT_DIM = FEAT_DIM
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    model = build_model(cfg)
    assert isinstance(model.heads, EmbeddingHead) and model.heads.out_dim == FEAT_DIM
    assert model.loss_names == ("loss_cls", "loss_triplet")
    cfg.MODEL.HEADS.POOL_LAYER = "gem"
    with pytest.raises(ValueError, match="POOL_LAYER 'gem'"):
        build_model(cfg)


def test_gradients_finite_and_nonzero_for_every_trainable_parameter(pynative):
    ms.set_seed(0)
    model = build_model(tiny_cfg())
    model.set_train(True)
    images, targets = batch(8, seed=1, ids_per_batch=4)
    params = model.trainable_params()

    def total(x, t):
        losses = model(x, t)
        return ops.addn(tuple(losses.values()))

    value, grads = ms.value_and_grad(total, None, params)(images, targets)
    assert np.isfinite(float(value.asnumpy()))
    zero = []
    for p, g in zip(params, grads):
        g = g.asnumpy()
        assert np.all(np.isfinite(g)), p.name
        if not np.any(g != 0):
            zero.append(p.name)
    assert not zero, f"parameters without gradient: {zero}"


def test_tiny_model_overfits_one_synthetic_batch_in_graph_mode(pynative, synthetic_cfg):
    """ResNet-18 (width 16) at 64x32 on one P x K = 4 x 4 batch of the synthetic dataset: the
    total loss (CE + triplet + local triplet) falls by more than half within 30 jitted steps."""
    from fastreid_ms.data import build_reid_train_loader

    cfg = synthetic_cfg
    cfg.SOLVER.IMS_PER_BATCH = 16
    cfg.DATALOADER.NUM_INSTANCE = 4
    loader = build_reid_train_loader(cfg)
    images, pids, _ = next(iter(loader))
    assert images.shape == (16, 3, 64, 32)

    model_cfg = tiny_cfg(**{"MODEL.HEADS.NUM_CLASSES": loader.num_classes})
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    model = build_model(model_cfg)
    model.set_train(True)
    opt = nn.Momentum(model.trainable_params(), learning_rate=0.01, momentum=0.9)

    def forward(x, t):
        losses = model(x, t)
        # Tuple aux: a dict of three or more losses as the aux output of value_and_grad is
        # mis-compiled by MindSpore 2.10's graph mode.
        values = tuple(losses.values())
        return ops.addn(values), values

    grad_fn = ms.value_and_grad(forward, None, opt.parameters, has_aux=True)

    @ms.jit
    def step(x, t):
        out, grads = grad_fn(x, t)
        opt(grads)
        return out[1]

    totals = []
    for _ in range(30):
        values = step(images, pids)
        totals.append(sum(float(v.asnumpy()) for v in values))
    assert all(np.isfinite(totals))
    assert min(totals[-5:]) < 0.5 * totals[0], totals

    model.set_train(False)
    feats = model(images)
    assert feats["global"].shape == (16, FEAT_DIM)
    assert feats["local"].shape == (16, PARTS, FEAT_DIM)
