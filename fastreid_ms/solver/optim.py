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


def build_param_groups(model: nn.Cell, solver_cfg, lr_table) -> List[Dict]:
    """MindSpore group dicts ``{"params", "lr", "weight_decay"}``, one per (lr factor, decay)."""
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for param in model.trainable_params():
        groups.setdefault(param_group_key(param.name, solver_cfg), []).append(param)
    if not groups:
        raise ValueError("The model has no trainable parameters to optimize.")
    table = np.asarray(lr_table, dtype=np.float64)
    return [{"params": params, "lr": TableLR(table * factor), "weight_decay": wd}
            for (factor, wd), params in groups.items()]


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
