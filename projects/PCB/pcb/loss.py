"""PCB's loss: the sum over the stripes of each stripe classifier's cross entropy."""
import mindspore.nn as nn
import mindspore.ops as ops

from fastreid_ms.modeling.losses.build import LOSS_REGISTRY


def stripe_cross_entropy(stripe_logits, targets, epsilon: float = 0.0):
    """stripe_logits (N, P, K), targets (N,) int -> scalar: sum over P of the batch-mean
    cross entropy, with label smoothing ``epsilon`` (target 1 - eps + eps/K, others eps/K)."""
    n, p, _ = stripe_logits.shape
    log_prob = ops.log_softmax(stripe_logits, axis=-1)
    index = ops.broadcast_to(ops.reshape(targets.astype("int32"), (-1, 1, 1)), (n, p, 1))
    nll = -ops.squeeze(ops.gather_elements(log_prob, 2, index), 2)        # (N, P)
    if epsilon > 0:
        nll = (1.0 - epsilon) * nll - epsilon * ops.mean(log_prob, axis=2)
    return ops.sum(ops.mean(nll, axis=0))


@LOSS_REGISTRY.register()
class PCBCrossEntropyLoss(nn.Cell):
    """Reads ``outputs["stripe_logits"]`` (N, P, K); returns SCALE x the summed stripe losses.

    Built from the config (MODEL.LOSSES.PCB_CE.EPSILON / SCALE) or with plain arguments.
    """
    loss_name = "loss_stripe_cls"

    def __init__(self, cfg=None, *, epsilon=None, scale=None):
        super().__init__()
        if cfg is not None:
            if "PCB_CE" not in cfg.MODEL.LOSSES:
                raise KeyError("PCBCrossEntropyLoss needs MODEL.LOSSES.PCB_CE: import the plugin "
                               "(PLUGINS: [\"projects.PCB.pcb\"]) before building the model.")
            lcfg = cfg.MODEL.LOSSES.PCB_CE
            epsilon = lcfg.EPSILON if epsilon is None else epsilon
            scale = lcfg.SCALE if scale is None else scale
        self.epsilon = float(epsilon or 0.0)
        self.scale = float(1.0 if scale is None else scale)
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"MODEL.LOSSES.PCB_CE.EPSILON must be in [0, 1), got {self.epsilon}.")

    def construct(self, outputs, targets):
        return stripe_cross_entropy(outputs["stripe_logits"], targets, self.epsilon) * self.scale
