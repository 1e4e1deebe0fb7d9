"""Optimizers: parameter groups (norm / bias decay, head lr factor), per-step lr from the
schedule, and two update steps of each optimizer against NumPy references."""
import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms
from mindspore import nn

from fastreid_ms.config import get_cfg
from fastreid_ms.solver import build_lr_scheduler, build_optimizer, param_group_key


class ToyNet(nn.Cell):
    """backbone: Dense(4->3, bias) + BN; heads: Dense(3->2, bias)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.SequentialCell([nn.Dense(4, 3), nn.BatchNorm1d(3)])
        self.heads = nn.Dense(3, 2)

    def construct(self, x):
        return self.heads(self.backbone(x))


def _cfg(opt="Momentum", **solver):
    cfg = get_cfg()
    cfg.SOLVER.OPT = opt
    cfg.SOLVER.MAX_EPOCH = 4
    cfg.SOLVER.WARMUP_EPOCHS = 1
    cfg.SOLVER.BASE_LR = 0.1
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    return cfg


def test_group_keys():
    s = _cfg(WEIGHT_DECAY=1e-3, WEIGHT_DECAY_NORM=0.0, WEIGHT_DECAY_BIAS=2e-4, HEADS_LR_FACTOR=10.0,
             BIAS_LR_FACTOR=2.0).SOLVER
    assert param_group_key("backbone.0.weight", s) == (1.0, 1e-3)
    assert param_group_key("backbone.1.gamma", s) == (1.0, 0.0)
    assert param_group_key("backbone.1.beta", s) == (1.0, 0.0)
    assert param_group_key("backbone.0.bias", s) == (2.0, 2e-4)
    assert param_group_key("heads.weight", s) == (10.0, 1e-3)
    assert param_group_key("heads.bias", s) == (20.0, 2e-4)


def test_lr_per_group_follows_schedule_and_global_step():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = _cfg(HEADS_LR_FACTOR=10.0)
    net = ToyNet()
    opt = build_optimizer(cfg, net, iters_per_epoch=3)
    table = build_lr_scheduler(cfg, 3)
    params = {p.name: p for p in net.trainable_params()}
    grads = tuple(ms.Tensor(np.zeros(p.shape, np.float32)) for p in opt.parameters)
    for step in range(5):
        assert int(opt.global_step.asnumpy()[0]) == step
        lr_back = opt.get_lr_parameter(params["backbone.0.weight"])
        lr_head = opt.get_lr_parameter(params["heads.weight"])
        step_t = opt.global_step
        assert float(lr_back(step_t).asnumpy()) == pytest.approx(table[step], rel=1e-6)
        assert float(lr_head(step_t).asnumpy()) == pytest.approx(10 * table[step], rel=1e-6)
        opt(grads)


def _numpy_reference(name, w0, grads_seq, lrs, wd, momentum=0.85, nesterov=True, betas=(0.9, 0.999),
                     eps=1e-8):
    w = w0.astype(np.float64).copy()
    buf = np.zeros_like(w)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(grads_seq, lrs), start=1):
        g = g.astype(np.float64)
        if name in ("Momentum", "SGD"):
            g = g + wd * w
            buf = momentum * buf + g
            w = w - lr * (g + momentum * buf if nesterov else buf)
        elif name == "Adam":  # L2 decay added to the gradient, bias-corrected step size
            g = g + wd * w
            m = betas[0] * m + (1 - betas[0]) * g
            v = betas[1] * v + (1 - betas[1]) * g * g
            lr_t = lr * np.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t)
            w = w - lr_t * m / (np.sqrt(v) + eps)
        elif name == "AdamW":  # decoupled decay, MindSpore's AdamWeightDecay (no bias correction)
            m = betas[0] * m + (1 - betas[0]) * g
            v = betas[1] * v + (1 - betas[1]) * g * g
            w = w - lr * (m / (np.sqrt(v) + eps) + wd * w)
    return w


@pytest.mark.parametrize("name,nesterov", [("Momentum", True), ("Momentum", False), ("SGD", True),
                                           ("SGD", False), ("Adam", False), ("AdamW", False)])
def test_two_steps_match_reference(name, nesterov):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = _cfg(name, WEIGHT_DECAY=0.01, WEIGHT_DECAY_NORM=0.0, WEIGHT_DECAY_BIAS=0.0,
               HEADS_LR_FACTOR=3.0, NESTEROV=nesterov)
    net = ToyNet()
    opt = build_optimizer(cfg, net, iters_per_epoch=2)
    table = build_lr_scheduler(cfg, 2)
    rng = np.random.default_rng(0)
    start = {p.name: p.asnumpy().copy() for p in opt.parameters}
    grads_seq = [[rng.standard_normal(p.shape).astype(np.float32) for p in opt.parameters]
                 for _ in range(2)]
    for grads in grads_seq:
        opt(tuple(ms.Tensor(g) for g in grads))
    for idx, p in enumerate(opt.parameters):
        factor, wd = param_group_key(p.name, cfg.SOLVER)
        expected = _numpy_reference(name, start[p.name], [g[idx] for g in grads_seq],
                                    [factor * table[0], factor * table[1]], wd, nesterov=nesterov)
        np.testing.assert_allclose(p.asnumpy(), expected, rtol=2e-4, atol=2e-6, err_msg=p.name)


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ValueError, match="SOLVER.OPT 'Lamb'.*Momentum, SGD, Adam, AdamW"):
        build_optimizer(_cfg("Lamb"), ToyNet(), iters_per_epoch=2)
