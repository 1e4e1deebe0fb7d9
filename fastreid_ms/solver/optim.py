"""Optimizers with parameter groups: weight decay per kind (norm / bias / other) and a
learning-rate factor for the head.

Each group's learning rate is the schedule's table times the group's factor, read at the
optimizer's ``global_step`` (one entry per iteration; see lr_scheduler.py).
"""
from collections import OrderedDict
from typing import Dict, List

import numpy as np
from mindspore import nn

from .lr_scheduler import TableLR

OPTIMIZERS = ("Momentum", "SGD", "Adam", "AdamW")

# MindSpore names the affine parameters of BatchNorm / LayerNorm / GroupNorm gamma and beta.
_NORM_SUFFIXES = (".gamma", ".beta")


def is_norm_param(name: str) -> bool:
    return name.endswith(_NORM_SUFFIXES) or name in ("gamma", "beta")


def is_bias_param(name: str) -> bool:
    return name.endswith(".bias") or name == "bias"


def param_group_key(name: str, solver_cfg) -> tuple:
    """(lr factor, weight decay) of one parameter, from its name.

    Norm parameters get WEIGHT_DECAY_NORM, biases WEIGHT_DECAY_BIAS and BIAS_LR_FACTOR,
    parameters under ``heads.`` HEADS_LR_FACTOR (factors multiply).
    """
    lr_factor = 1.0
    if name.startswith("heads."):
        lr_factor *= float(solver_cfg.HEADS_LR_FACTOR)
    if is_norm_param(name):
        wd = float(solver_cfg.WEIGHT_DECAY_NORM)
    elif is_bias_param(name):
        wd = float(solver_cfg.WEIGHT_DECAY_BIAS)
        lr_factor *= float(solver_cfg.BIAS_LR_FACTOR)
    else:
        wd = float(solver_cfg.WEIGHT_DECAY)
    return lr_factor, wd


def is_frozen_param(name: str, freeze_layers) -> bool:
    """True when ``name`` lies under one of ``freeze_layers`` (children of the model such as
    "backbone", or dotted paths such as "backbone.layer1")."""
    return any(name == layer or name.startswith(layer + ".") for layer in freeze_layers)


def build_param_groups(model: nn.Cell, solver_cfg, lr_table, freeze_layers=(),
                       freeze_iters: int = 0) -> List[Dict]:
    """MindSpore group dicts ``{"params", "lr", "weight_decay"}``, one per (lr factor, decay,
    frozen).

    Parameters under ``freeze_layers`` get learning rate 0 for the first ``freeze_iters``
    iterations (SOLVER.FREEZE_ITERS with MODEL.FREEZE_LAYERS, fast-reid's SBS): they do not
    move while the new layers settle, and the schedule's table is used unchanged after that.
    """
    freeze_layers = tuple(str(l) for l in freeze_layers or ()) if int(freeze_iters) > 0 else ()
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    matched = set()
    for param in model.trainable_params():
        frozen = is_frozen_param(param.name, freeze_layers)
        if frozen:
            matched.update(l for l in freeze_layers if is_frozen_param(param.name, (l,)))
        key = param_group_key(param.name, solver_cfg) + (frozen,)
        groups.setdefault(key, []).append(param)
    if not groups:
        raise ValueError("The model has no trainable parameters to optimize.")
    unknown = [l for l in freeze_layers if l not in matched]
    if unknown:
        raise ValueError(f"MODEL.FREEZE_LAYERS names {unknown}, which hold no trainable parameter "
                         "of the model; use the names of its children, e.g. ['backbone'].")
    table = np.asarray(lr_table, dtype=np.float64)
    out = []
    # Frozen groups last, so that the first group (the rate the trainer logs) is a moving one.
    items = sorted(groups.items(), key=lambda kv: kv[0][2])
    for (factor, wd, frozen), params in items:
        lrs = table * factor
        if frozen:
            lrs = lrs.copy()
            lrs[:int(freeze_iters)] = 0.0
        out.append({"params": params, "lr": TableLR(lrs), "weight_decay": wd})
    return out


def build_optimizer_from_groups(name: str, groups: List[Dict], solver_cfg) -> nn.Optimizer:
    """Momentum (Nesterov option), SGD (with MOMENTUM / NESTEROV), Adam (L2 decay) or
    AdamW (decoupled decay). Nesterov momentum is built on ``nn.SGD`` (see below)."""
    s = solver_cfg
    # Groups carry lr and weight decay; the top-level values are unused defaults.
    default_lr = groups[0]["lr"]
    if name == "Momentum" and bool(s.NESTEROV) and float(s.MOMENTUM) > 0:
        # MindSpore 2.10's CPU ApplyMomentum kernel ignores use_nesterov (measured: the update
        # equals plain momentum). SGD with momentum, no dampening and nesterov=True is the same
        # update (buf = m * buf + g; w -= lr * (g + m * buf)) and is honoured on every device.
        return nn.SGD(groups, learning_rate=default_lr, momentum=float(s.MOMENTUM), nesterov=True)
    if name == "Momentum":
        return nn.Momentum(groups, learning_rate=default_lr, momentum=float(s.MOMENTUM),
                           use_nesterov=bool(s.NESTEROV))
    if name == "SGD":
        return nn.SGD(groups, learning_rate=default_lr, momentum=float(s.MOMENTUM),
                      nesterov=bool(s.NESTEROV) and float(s.MOMENTUM) > 0)
    beta1, beta2 = (float(b) for b in s.BETAS)
    if name == "Adam":
        return nn.Adam(groups, learning_rate=default_lr, beta1=beta1, beta2=beta2, eps=1e-8)
    if name == "AdamW":
        return nn.AdamWeightDecay(groups, learning_rate=default_lr, beta1=beta1, beta2=beta2,
                                  eps=1e-8)
    raise ValueError(f"Unknown SOLVER.OPT '{name}': use one of {', '.join(OPTIMIZERS)}.")
