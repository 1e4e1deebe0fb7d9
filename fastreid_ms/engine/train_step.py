"""One training step: forward (a dict of named losses), their sum, gradients, optional
gradient all-reduce, dynamic loss scaling, and the optimizer update — compiled as one
graph with ``mindspore.jit`` in GRAPH mode (run eagerly in PYNATIVE mode for debugging).

Mixed precision: ``mindspore.amp.auto_mixed_precision`` at SOLVER.AMP.LEVEL. With a loss
scaler (levels other than O0) the loss is multiplied by the scale before the backward
pass and the gradients divided by it; when any gradient is not finite the update is
skipped and the scale lowered (``DynamicLossScaler.adjust``). The optimizer's step
counter still advances on a skipped update, so ``global_step`` is always the number of
iterations done and the learning-rate position stays aligned with the epoch.
"""
import math
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import mindspore as ms
from mindspore import amp, nn, ops

AMP_LEVELS = ("O0", "O1", "O2", "O3")

# Why "auto" means O0 on CPU (measured on the development machine, ResNet-50 step):
CPU_AMP_REASON = (
    "float16 is slower than float32 on CPU (ResNet-50 step 18 s at O2 against 8.5 s at O0), "
    "bfloat16 operators are missing on CPU, and MindSpore's build_train_network rejects dynamic "
    "loss scaling on CPU; set SOLVER.AMP.LEVEL explicitly to override")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; training stops."""


def resolve_amp_level(level: str, device: str) -> Tuple[str, str]:
    """(O0|O1|O2|O3, reason for the log) for SOLVER.AMP.LEVEL ``level`` on ``device``."""
    key = str(level).strip()
    if key.lower() == "auto":
        if device == "CPU":
            return "O0", f"SOLVER.AMP.LEVEL auto -> O0 on CPU: {CPU_AMP_REASON}"
        return "O2", f"SOLVER.AMP.LEVEL auto -> O2 on {device} (float16 compute, float32 BN and loss)"
    key = key.upper()
    if key not in AMP_LEVELS:
        raise ValueError(f"Unknown SOLVER.AMP.LEVEL '{level}': use auto, O0, O1, O2 or O3.")
    return key, f"SOLVER.AMP.LEVEL {key} on {device}"


def build_loss_scaler(level: str, amp_cfg) -> Optional[amp.DynamicLossScaler]:
    """A dynamic loss scaler for float16 levels (O1/O2/O3); None for O0 (float32)."""
    if level == "O0":
        return None
    return amp.DynamicLossScaler(scale_value=float(amp_cfg.INIT_SCALE),
                                 scale_factor=int(amp_cfg.SCALE_FACTOR),
                                 scale_window=int(amp_cfg.SCALE_WINDOW))


class TrainStep:
    """``step(images, targets) -> (losses: the model's dict of scalar Tensors, grads_finite: bool
    Tensor, loss scale: float32 Tensor after this step's adjustment)``.

    Args:
        model: Cell whose training call ``model(images, targets)`` returns a dict of losses.
        optimizer: a MindSpore optimizer over the parameters to train.
        loss_scaler: ``mindspore.amp.DynamicLossScaler`` or None (no scaling, scale 1).
        grad_reducer: callable on the gradient tuple, e.g. ``nn.DistributedGradReducer`` for data
            parallel (None on one device).
        jit: compile the step with ``mindspore.jit`` (GRAPH mode); False runs it eagerly.
    """

    def __init__(self, model: nn.Cell, optimizer: nn.Optimizer,
                 loss_scaler: Optional[amp.DynamicLossScaler] = None,
                 grad_reducer: Optional[Callable] = None, jit: bool = True):
        self.model = model
        self.optimizer = optimizer
        self.loss_scaler = loss_scaler
        self.grad_reducer = grad_reducer
        self.jit = jit
        self._unit_scale = ms.Tensor(1.0, ms.float32)
        self._names = None

        def forward(images, targets):
            losses = model(images, targets)
            # The aux output is a tuple of the values: a dict there (alone or nested), or
            # the names as strings, is mis-compiled by MindSpore 2.10's graph mode for some
            # models. The names are found once on the host (see loss_names).
            values = tuple(losses.values())
            total = 0
            for value in values:
                total = total + ops.cast(value, ms.float32)
            scaled = loss_scaler.scale(total) if loss_scaler is not None else total
            return scaled, values

        grad_fn = ms.value_and_grad(forward, None, optimizer.parameters, has_aux=True)
        scaler, reducer, opt = loss_scaler, grad_reducer, optimizer
        unit_scale = self._unit_scale

        def step(images, targets):
            (_, values), grads = grad_fn(images, targets)
            if reducer is not None:
                grads = reducer(grads)
            if scaler is not None:
                grads = scaler.unscale(grads)
            finite = amp.all_finite(grads)
            if scaler is not None:
                scaler.adjust(finite)
                scale = scaler.scale_value.value()
            else:
                scale = unit_scale
            if finite:
                opt(grads)
            else:
                ops.assign_add(opt.global_step, ops.ones_like(opt.global_step))
            return values, finite, scale

        self._step = ms.jit(step) if jit else step

    def loss_names(self, images, targets) -> Tuple[str, ...]:
        """Names of the model's losses, in the order of its output dict.

        ``model.loss_names`` when the model has it (Baseline does); otherwise one forward
        pass that returns only the keys, with the BN statistics it would move restored.
        """
        if self._names is None:
            names = getattr(self.model, "loss_names", None)
            if names is None:
                saved = [(p, p.asnumpy().copy()) for p in self.model.untrainable_params()]
                model = self.model

                def keys(images, targets):
                    return tuple(model(images, targets).keys())

                names = ms.jit(keys)(images, targets) if self.jit else keys(images, targets)
                for param, value in saved:
                    param.set_data(ms.Tensor(value, param.dtype))
            self._names = tuple(str(n) for n in names)
        return self._names

    def __call__(self, images, targets):
        values, finite, scale = self._step(images, targets)
        names = self.loss_names(images, targets)
        if len(names) != len(values):
            raise RuntimeError(f"The model returned {len(values)} losses but names {names}.")
        return dict(zip(names, values)), finite, scale


def losses_to_floats(losses: Dict) -> Dict[str, float]:
    """{name: python float} from the step's loss Tensors."""
    return {name: float(np.asarray(value.asnumpy(), dtype=np.float64).reshape(-1)[0])
            for name, value in losses.items()}


def check_losses_finite(losses: Dict[str, float], iteration: int, epoch: int,
                        last_checkpoint: Optional[str] = None) -> None:
    """Raise :class:`NonFiniteLossError` naming the iteration and the first bad loss term."""
    bad = [(name, value) for name, value in losses.items() if not math.isfinite(value)]
    if not bad:
        return
    terms = ", ".join(f"{name} = {value}" for name, value in bad)
    kept = (f"The last good checkpoint is kept: {last_checkpoint}." if last_checkpoint
            else "No checkpoint had been written yet.")
    raise NonFiniteLossError(
        f"Loss became non-finite at iteration {iteration} (epoch {epoch}): {terms}. Training "
        f"stopped. {kept} Lower SOLVER.BASE_LR, check the data (images with NaN), or use "
        "SOLVER.AMP.LEVEL O0 if float16 overflowed.")


def keep_losses_float32(model: nn.Cell) -> int:
    """Run every loss cell (a cell with a ``loss_name``) and every cell marked
    ``keep_float32`` (e.g. ``modeling.layers.L2Norm``) in float32; returns how many.

    Under O2 / O3 PyNative runs each operator inside a float16 cell in float16, so a loss
    that casts its inputs to float32 is cast back, and e.g. the triplet's distance floor
    (1e-12) underflows to 0: sqrt(0) gives infinite gradients at any loss scale.
    """
    count = 0
    for _, cell in model.cells_and_names():
        if cell is model:
            continue
        if getattr(cell, "loss_name", None) is not None or getattr(cell, "keep_float32", False):
            cell.to_float(ms.float32)
            count += 1
    return count


def apply_amp(model: nn.Cell, level: str) -> nn.Cell:
    """``mindspore.amp.auto_mixed_precision(model, level)``; returns the converted model itself.

    For O2 / O3 MindSpore wraps the network in a cell that casts its output to float32;
    that cast mangles dict outputs (the losses, the features) in GRAPH mode, so the
    wrapper is removed: the train step casts every loss to float32 itself. Loss cells are
    kept in float32 (:func:`keep_losses_float32`). The model is converted in place (same
    parameters, same names); O0 leaves it untouched.
    """
    if level == "O0":
        return model
    converted = amp.auto_mixed_precision(model, level)
    inner = getattr(converted, "_backbone", None)
    if inner is model:
        setattr(model, "_amp_level", level)
        converted = model
    if level in ("O2", "O3"):
        keep_losses_float32(converted)
    return converted
