"""The compiled train step: every AMP level on CPU (its convolution in float16 at O1-O3),
PyNative, loss-scale overflow handling (float16 gradients overflowing where float32 ones do
not), the gradient-reducer hook, NaN detection and the AMP level choice. The mixed-precision
layer by layer: tests/test_amp.py."""
import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms
from mindspore import amp, nn, ops

from fastreid_ms.config import get_cfg
from fastreid_ms.engine.train_step import (AMP_LEVELS, NonFiniteLossError, TrainStep, apply_amp,
                                           build_loss_scaler, check_losses_finite,
                                           losses_to_floats, resolve_amp_level)
from fastreid_ms.solver import build_optimizer


class ConvToy(nn.Cell):
    """conv -> BN -> ReLU -> mean pool -> heads (Dense); losses: CE and a feature penalty."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, has_bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.heads = nn.Dense(8, num_classes)

    def construct(self, images, targets=None):
        feat = ops.relu(self.bn(self.conv(images))).mean(axis=(2, 3))
        if not self.training:
            return {"global": feat}
        logits = self.heads(feat)
        ce = ops.cross_entropy(ops.cast(logits, ms.float32), targets)
        reg = ops.cast(feat, ms.float32).square().mean() * 0.01
        return {"loss_cls": ce, "loss_reg": reg}


def _batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 3, 12, 8)).astype(np.float32)
    labels = (np.arange(n) % 4).astype(np.int32)
    images += labels[:, None, None, None].astype(np.float32)  # learnable
    return ms.Tensor(images), ms.Tensor(labels)


def _cfg(level="O0"):
    cfg = get_cfg()
    cfg.SOLVER.MAX_EPOCH = 2
    cfg.SOLVER.WARMUP_EPOCHS = 0
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.AMP.LEVEL = level
    cfg.SOLVER.AMP.INIT_SCALE = 1024.0
    return cfg


def _run(level, jit=True, steps=4):
    cfg = _cfg(level)
    model = apply_amp(ConvToy(), level)
    model.set_train(True)
    opt = build_optimizer(cfg, model, iters_per_epoch=10)
    step = TrainStep(model, opt, build_loss_scaler(level, cfg.SOLVER.AMP), jit=jit)
    images, labels = _batch()
    history = []
    for _ in range(steps):
        losses, finite, scale = step(images, labels)
        history.append((losses_to_floats(losses), bool(finite.asnumpy()), float(scale.asnumpy())))
    return model, opt, history


@pytest.mark.parametrize("level", AMP_LEVELS)
def test_every_amp_level_trains_on_cpu(level):
    ms.set_context(mode=ms.GRAPH_MODE)
    model, opt, history = _run(level)
    assert set(history[0][0]) == {"loss_cls", "loss_reg"}
    totals = [sum(h[0].values()) for h in history]
    assert all(np.isfinite(totals))
    assert totals[-1] < totals[0]
    assert int(opt.global_step.asnumpy()[0]) == len(history)
    if level == "O0":
        assert all(h[2] == 1.0 for h in history)
    else:
        assert all(h[2] > 0 for h in history)
    # The conv computes in float16 at O1 / O2 / O3: 2**-26 (below half of float16's smallest
    # subnormal) is rounded to 0 by the cast, so the bias-free conv gives exactly 0.
    tiny = ms.Tensor(np.full((1, 3, 12, 8), 2.0 ** -26, np.float32))
    assert (np.abs(model.conv(tiny).asnumpy()).max() == 0) == (level != "O0")


def test_float16_gradients_overflow_where_float32_ones_do_not():
    """GRAPH mode, compiled step, loss scale 2**20: at O2 the scaled gradients pass through
    float16 tensors and overflow (65504 at most), so the update is skipped and the scale
    halves; at O0 (float32, as with an AMP that does nothing) the same step is finite.
    (MindSpore's own amp.build_train_network refuses a dynamic loss scale on CPU; this
    TrainStep's compiled step runs one.)"""
    ms.set_context(mode=ms.GRAPH_MODE)
    for level in ("O0", "O2"):
        ms.set_seed(0)
        model = apply_amp(ConvToy(), level)
        model.set_train(True)
        before = model.heads.weight.asnumpy().copy()
        opt = nn.SGD(model.trainable_params(), 0.01)
        step = TrainStep(model, opt, amp.DynamicLossScaler(2.0 ** 20, 2, 1000))
        losses, finite, scale = step(*_batch())
        assert np.all(np.isfinite(list(losses_to_floats(losses).values())))
        assert bool(finite.asnumpy()) == (level == "O0"), level
        assert float(scale.asnumpy()) == (2.0 ** 20 if level == "O0" else 2.0 ** 19), level
        updated = not np.array_equal(model.heads.weight.asnumpy(), before)
        assert updated == (level == "O0"), level


def test_pynative_matches_graph():
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(1)
    model_g, _, hist_g = _run("O0", jit=True, steps=3)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(1)
    model_p, _, hist_p = _run("O0", jit=False, steps=3)
    ms.set_context(mode=ms.GRAPH_MODE)
    for (lg, _, _), (lp, _, _) in zip(hist_g, hist_p):
        for name in lg:
            assert lg[name] == pytest.approx(lp[name], rel=1e-4, abs=1e-6)


class SqrtAtZero(nn.Cell):
    """Loss sqrt(sum(w^2)) + 0 * x: finite (0) at w = 0, but its gradient is 0/0 = NaN."""

    def __init__(self):
        super().__init__()
        self.w = ms.Parameter(ms.Tensor(np.zeros((3,), np.float32)), name="w")
        self.heads = nn.Dense(2, 2)

    def construct(self, x, targets=None):
        loss = ops.sqrt((self.w * self.w).sum()) + (self.heads(x) * 0).sum()
        return {"loss_sqrt": loss}


def test_overflow_skips_update_and_lowers_scale():
    ms.set_context(mode=ms.GRAPH_MODE)
    model = SqrtAtZero()
    model.set_train(True)
    opt = nn.Momentum(model.trainable_params(), 0.1, 0.9)
    scaler = amp.DynamicLossScaler(1024.0, 2, 1000)
    step = TrainStep(model, opt, scaler)
    before = {p.name: p.asnumpy().copy() for p in model.trainable_params()}
    x = ms.Tensor(np.ones((2, 2), np.float32))
    losses, finite, scale = step(x, ms.Tensor(np.zeros(2, np.int32)))
    assert losses_to_floats(losses)["loss_sqrt"] == 0.0
    assert not bool(finite.asnumpy())
    assert float(scale.asnumpy()) == 512.0
    for p in model.trainable_params():
        np.testing.assert_array_equal(p.asnumpy(), before[p.name])
    # The iteration still counts: the learning-rate position follows the epoch.
    assert int(opt.global_step.asnumpy()[0]) == 1
    step(x, ms.Tensor(np.zeros(2, np.int32)))
    assert float(scaler.scale_value.asnumpy()) == 256.0


def test_scale_grows_after_window_of_finite_steps():
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = _cfg("O2")
    cfg.SOLVER.AMP.SCALE_WINDOW = 2
    model = apply_amp(ConvToy(), "O2")
    model.set_train(True)
    opt = build_optimizer(cfg, model, iters_per_epoch=10)
    scaler = build_loss_scaler("O2", cfg.SOLVER.AMP)
    step = TrainStep(model, opt, scaler)
    images, labels = _batch()
    scales = [float(step(images, labels)[2].asnumpy()) for _ in range(4)]
    assert scales == [1024.0, 2048.0, 2048.0, 4096.0]


class HalfGrads(nn.Cell):
    """Stands in for nn.DistributedGradReducer: scales every gradient by 0.5."""

    def construct(self, grads):
        return tuple(g * 0.5 for g in grads)


def test_grad_reducer_hook_is_applied():
    ms.set_context(mode=ms.GRAPH_MODE)
    results = []
    for reducer in (None, HalfGrads()):
        ms.set_seed(5)
        model = ConvToy()
        model.set_train(True)
        w0 = model.heads.weight.asnumpy().copy()
        opt = nn.SGD(model.trainable_params(), 0.1)
        step = TrainStep(model, opt, grad_reducer=reducer)
        step(*_batch())
        results.append(model.heads.weight.asnumpy() - w0)
    np.testing.assert_allclose(results[1], 0.5 * results[0], rtol=1e-4, atol=1e-7)


def test_nonfinite_loss_error_names_iteration_and_term():
    check_losses_finite({"loss_cls": 1.0, "loss_triplet": 0.3}, iteration=5, epoch=0)
    with pytest.raises(NonFiniteLossError) as info:
        check_losses_finite({"loss_cls": 1.0, "loss_triplet": float("nan")}, iteration=17, epoch=2,
                            last_checkpoint="/out/model_0002.ckpt")
    msg = str(info.value)
    assert "iteration 17 (epoch 2)" in msg and "loss_triplet = nan" in msg
    assert "loss_cls" not in msg and "/out/model_0002.ckpt" in msg


def test_amp_level_resolution():
    level, reason = resolve_amp_level("auto", "CPU")
    assert level == "O0" and "float16 is slower" in reason and "bfloat16" in reason
    assert resolve_amp_level("auto", "GPU")[0] == "O2"
    assert resolve_amp_level("o3", "CPU")[0] == "O3"
    with pytest.raises(ValueError, match="SOLVER.AMP.LEVEL 'O4'"):
        resolve_amp_level("O4", "CPU")


class PairwiseDistanceLoss(nn.Cell):
    """Mean pairwise distance sqrt(max(d^2, 1e-12)) in float32; the diagonal sits on the floor."""

    loss_name = "loss_dist"

    def construct(self, feat):
        feat = ops.cast(feat, ms.float32)
        sq = (feat * feat).sum(axis=1, keepdims=True)
        d2 = sq + sq.T - 2 * ops.matmul(feat, feat.T)
        return ops.sqrt(ops.maximum(d2, 1e-12)).mean()


class DenseWithLoss(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(6, 4)
        self.loss = PairwiseDistanceLoss()

    def construct(self, x, targets=None):
        return {"loss_dist": self.loss(self.fc(x))}


@pytest.mark.parametrize("level", ["O2", "O3"])
def test_loss_cells_stay_float32_in_pynative(level):
    # 1e-12 underflows to 0 in float16: without the float32 loss cell the gradient is NaN.
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        ms.set_seed(0)
        model = apply_amp(DenseWithLoss(), level)
        model.set_train(True)
        opt = nn.SGD(model.trainable_params(), 0.01)
        step = TrainStep(model, opt, amp.DynamicLossScaler(2.0, 2, 1000), jit=False)
        x = ms.Tensor(np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32))
        losses, finite, _ = step(x, ms.Tensor(np.zeros(5, np.int32)))
        assert bool(finite.asnumpy()) and np.isfinite(losses_to_floats(losses)["loss_dist"])
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
