"""Optimizers and learning-rate schedules."""
from .build import build_optimizer
from .lr_scheduler import (TableLR, build_lr_scheduler, warmup_cosine_lr, warmup_multistep_lr,
                           warmup_start_lr)
from .optim import OPTIMIZERS, build_optimizer_from_groups, build_param_groups, param_group_key

__all__ = ["build_optimizer", "build_lr_scheduler", "warmup_cosine_lr", "warmup_multistep_lr",
           "warmup_start_lr", "TableLR", "OPTIMIZERS", "build_param_groups",
           "build_optimizer_from_groups", "param_group_key"]
