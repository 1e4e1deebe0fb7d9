"""Per-iteration learning rates: a linear warm-up, then cosine annealing or multistep decay.

The whole schedule is a table with one value per training iteration, computed once on
the host; the optimizer reads entry ``global_step`` (see :class:`TableLR`), so the
learning-rate position is part of the optimizer state and is restored on resume.

With ``I`` iterations per epoch, ``W = WARMUP_EPOCHS * I`` warm-up iterations,
``T = MAX_EPOCH * I`` iterations in all, base rate ``b`` and warm-up start ``s``
(``WARMUP_START_LR`` when it is >= 0, else ``WARMUP_FACTOR * b``), iteration ``i``
(0-based) gets

* warm-up, ``i < W``:   ``lr(i) = s + (b - s) * (i + 1) / W``  ("linear"; the last warm-up
  iteration reaches ``b``, the first one is already above ``s``), or ``s`` ("constant");
* cosine, ``i >= W``:   ``lr(i) = m + (b - m) * (1 + cos(pi * (i - W) / (T - W))) / 2``
  with ``m = ETA_MIN_LR``: ``b`` at the end of the warm-up, ``m`` at iteration ``T``;
* multistep, ``i >= W``: ``lr(i) = b * GAMMA ** k`` where ``k`` is the number of
  ``STEPS`` (epochs) that are ``<= i // I``.

A warm-up as long as the run or longer (``W >= T``, e.g. MAX_EPOCH 1 with the recipe's 6
warm-up epochs) is cut short, with a warning, as fast-reid allows: the first ``T`` iterations
follow the same warm-up line (the ORIGINAL ``W`` in the formula, so the rate reaches ``b``
only if ``T = W``) and there is no cosine / multistep part. The warm-up is truncated, not
rescaled, so a short run sees the learning rates the long run would have started with.

fast-reid's units are available too: ``WARMUP_ITERS`` > 0 gives the warm-up in iterations
(``W = WARMUP_ITERS``), and ``DELAY_EPOCHS`` = ``D`` holds the cosine at ``b`` until iteration
``max(W, D * I)``, after which the cosine runs to ``m`` at ``T`` (fast-reid steps it once per
epoch, this table once per iteration).

The seed's recipe (lr_init 0, lr_max 5e-2, warmup_epochs 6, max_epoch 300, cosine) is
``s = 0, b = 5e-2, W = 6 I, T = 300 I, m = 3.5e-6``: 0 -> 5e-2 over the first 6 epochs,
then a cosine down to 3.5e-6 at the end of epoch 300.
"""
import logging
import math
from typing import Sequence

import numpy as np
import mindspore as ms
from mindspore import ops
from mindspore.nn.learning_rate_schedule import LearningRateSchedule

logger = logging.getLogger("fastreid_ms")


def _warmup_values(base_lr: float, start_lr: float, warmup_iters: int, method: str,
                   count: int) -> np.ndarray:
    """The first ``count`` (<= warmup_iters) values of a ``warmup_iters``-iteration warm-up."""
    idx = np.arange(count, dtype=np.float64)
    if method == "linear":
        return start_lr + (base_lr - start_lr) * (idx + 1.0) / warmup_iters
    if method == "constant":
        return np.full(count, start_lr, dtype=np.float64)
    raise ValueError(f"Unknown SOLVER.WARMUP_METHOD '{method}': use 'linear' or 'constant'.")


def warmup_cosine_lr(base_lr: float, iters_per_epoch: int, max_epoch: int, warmup_epochs: float = 0,
                     warmup_start_lr: float = 0.0, eta_min: float = 0.0,
                     warmup_method: str = "linear", warmup_iters: int = 0,
                     delay_epochs: float = 0) -> np.ndarray:
    """(MAX_EPOCH * iters_per_epoch,) float64 learning rates: warm-up (``warmup_iters`` when
    > 0, else ``warmup_epochs``), ``base_lr`` until epoch ``delay_epochs``, then cosine to
    ``eta_min``."""
    total, warm = _check(iters_per_epoch, max_epoch, warmup_epochs, warmup_iters)
    lrs = np.empty(total, dtype=np.float64)
    cut = min(warm, total)
    lrs[:cut] = _warmup_values(base_lr, warmup_start_lr, warm, warmup_method, cut)
    if not delay_epochs >= 0:
        raise ValueError(f"SOLVER.DELAY_EPOCHS ({delay_epochs}) must be >= 0.")
    start = min(max(cut, int(round(delay_epochs * iters_per_epoch))), total)
    lrs[cut:start] = base_lr
    span = total - start
    if span > 0:
        progress = np.arange(span, dtype=np.float64) / span
        lrs[start:] = eta_min + (base_lr - eta_min) * (1.0 + np.cos(math.pi * progress)) / 2.0
    return lrs


def warmup_multistep_lr(base_lr: float, iters_per_epoch: int, max_epoch: int, steps: Sequence[int],
                        gamma: float = 0.1, warmup_epochs: float = 0, warmup_start_lr: float = 0.0,
                        warmup_method: str = "linear", warmup_iters: int = 0) -> np.ndarray:
    """(MAX_EPOCH * iters_per_epoch,) learning rates: warm-up then ``base_lr * gamma ** k`` where
    ``k`` counts the milestone epochs in ``steps`` already reached."""
    if list(steps) != sorted(steps):
        raise ValueError(f"SOLVER.STEPS must be increasing epochs; got {list(steps)}.")
    total, warm = _check(iters_per_epoch, max_epoch, warmup_epochs, warmup_iters)
    epochs = np.arange(total) // iters_per_epoch
    k = np.searchsorted(np.asarray(steps, dtype=np.int64), epochs, side="right")
    lrs = base_lr * np.power(float(gamma), k)
    cut = min(warm, total)
    lrs[:cut] = _warmup_values(base_lr, warmup_start_lr, warm, warmup_method, cut)
    return lrs.astype(np.float64)


def _check(iters_per_epoch: int, max_epoch: int, warmup_epochs: float, warmup_iters: int = 0):
    """(T, W): iterations in all and warm-up iterations (``warmup_iters`` when > 0, else
    ``warmup_epochs`` epochs); W may be >= T (a cut warm-up)."""
    if iters_per_epoch <= 0 or max_epoch <= 0:
        raise ValueError(f"Need iters_per_epoch > 0 and SOLVER.MAX_EPOCH > 0; got {iters_per_epoch} "
                         f"and {max_epoch}.")
    if not warmup_epochs >= 0:  # also rejects NaN
        raise ValueError(f"SOLVER.WARMUP_EPOCHS ({warmup_epochs}) must be >= 0.")
    if int(warmup_iters) < 0:
        raise ValueError(f"SOLVER.WARMUP_ITERS ({warmup_iters}) must be >= 0.")
    total = int(max_epoch * iters_per_epoch)
    if int(warmup_iters) > 0:
        warm = int(warmup_iters)
        what, length = "SOLVER.WARMUP_ITERS", f"{warm}-iteration"
    else:
        warm = int(round(warmup_epochs * iters_per_epoch))
        what, length = "SOLVER.WARMUP_EPOCHS", f"{warmup_epochs}-epoch"
    if warm >= total:
        if warm > total:
            how = (f"is cut at the end of the run after {total} of its {warm} iterations (the "
                   f"learning rate follows the {length} warm-up line, so it stops "
                   "below SOLVER.BASE_LR)")
        else:
            how = (f"fills the whole run ({total} iterations; the learning rate reaches "
                   "SOLVER.BASE_LR at the last one)")
        logger.warning("%s (%s) is not shorter than SOLVER.MAX_EPOCH (%s): the "
                       "warm-up %s and there is no decay part.", what,
                       warmup_iters if int(warmup_iters) > 0 else warmup_epochs, max_epoch, how)
    return total, warm


def warmup_start_lr(cfg) -> float:
    """The warm-up start: SOLVER.WARMUP_START_LR when >= 0, else WARMUP_FACTOR * BASE_LR."""
    s = cfg.SOLVER
    return float(s.WARMUP_START_LR) if s.WARMUP_START_LR >= 0 else float(s.WARMUP_FACTOR * s.BASE_LR)


def build_lr_scheduler(cfg, iters_per_epoch: int) -> np.ndarray:
    """The per-iteration learning-rate table (float64, MAX_EPOCH * iters_per_epoch) of SOLVER.*."""
    s = cfg.SOLVER
    common = dict(base_lr=float(s.BASE_LR), iters_per_epoch=int(iters_per_epoch),
                  max_epoch=int(s.MAX_EPOCH), warmup_epochs=float(s.WARMUP_EPOCHS),
                  warmup_start_lr=warmup_start_lr(cfg), warmup_method=s.WARMUP_METHOD,
                  warmup_iters=int(s.WARMUP_ITERS))
    if s.SCHED == "CosineAnnealingLR":
        return warmup_cosine_lr(eta_min=float(s.ETA_MIN_LR), delay_epochs=float(s.DELAY_EPOCHS),
                                **common)
    if s.SCHED == "MultiStepLR":
        return warmup_multistep_lr(steps=list(s.STEPS), gamma=float(s.GAMMA), **common)
    raise ValueError(f"Unknown SOLVER.SCHED '{s.SCHED}': use 'CosineAnnealingLR' or 'MultiStepLR'.")


class TableLR(LearningRateSchedule):
    """Learning rate = ``table[min(global_step, len(table) - 1)]`` (float32 scalar).

    Clamping keeps the last value if training runs past the table (MindSpore's own
    Tensor learning rates would gather out of range).
    """

    def __init__(self, table):
        super().__init__()
        table = np.asarray(table, dtype=np.float32).reshape(-1)
        if table.size == 0:
            raise ValueError("A learning-rate table needs at least one value.")
        self.table = ms.Tensor(table)
        self.last = int(table.size - 1)

    def construct(self, global_step):
        idx = ops.clip_by_value(global_step.reshape(-1)[0], 0, self.last)
        return ops.gather(self.table, idx, 0)
