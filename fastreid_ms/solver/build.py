"""Build the optimizer and its per-iteration schedule from SOLVER.*."""
from mindspore import nn

from .lr_scheduler import build_lr_scheduler
from .optim import build_optimizer_from_groups, build_param_groups


def build_optimizer(cfg, model: nn.Cell, iters_per_epoch: int) -> nn.Optimizer:
    """The SOLVER.OPT optimizer over ``model``'s trainable parameters.

    Learning rates follow SOLVER.SCHED per iteration (``iters_per_epoch`` iterations per
    epoch); the position in the schedule is the optimizer's ``global_step``. MODEL.FREEZE_LAYERS
    get learning rate 0 for the first SOLVER.FREEZE_ITERS iterations.
    """
    lr_table = build_lr_scheduler(cfg, iters_per_epoch)
    groups = build_param_groups(model, cfg.SOLVER, lr_table,
                                freeze_layers=list(cfg.MODEL.FREEZE_LAYERS),
                                freeze_iters=int(cfg.SOLVER.FREEZE_ITERS))
    return build_optimizer_from_groups(cfg.SOLVER.OPT, groups, cfg.SOLVER)
