"""Cross entropy with label smoothing (Szegedy et al.), the seed's CrossEntropyLabelSmooth."""
import mindspore.nn as nn
import mindspore.ops as ops

from .build import LOSS_REGISTRY


def label_smoothed_cross_entropy(logits, targets, epsilon):
    """logits (N, K), targets int (N,) -> scalar mean over the batch of
    sum_k -q_k log p_k with q = (1 - epsilon) one_hot + epsilon / K."""
    num_classes = logits.shape[1]
    log_probs = ops.log_softmax(logits.astype("float32"), axis=1)
    one_hot = ops.one_hot(targets.astype("int32"), num_classes, 1.0, 0.0).astype("float32")
    soft = one_hot * (1.0 - epsilon) + epsilon / num_classes
    return (-soft * log_probs).sum(axis=1).mean()


@LOSS_REGISTRY.register()
class CrossEntropyLoss(nn.Cell):
    """Identity loss on ``outputs["cls_logits"]`` (N, K); MODEL.LOSSES.CE.{EPSILON, SCALE}."""
    loss_name = "loss_cls"

    def __init__(self, cfg=None, *, epsilon=None, scale=None):
        super().__init__()
        if cfg is not None:
            epsilon = cfg.MODEL.LOSSES.CE.EPSILON if epsilon is None else epsilon
            scale = cfg.MODEL.LOSSES.CE.SCALE if scale is None else scale
        self.epsilon = float(0.0 if epsilon is None else epsilon)
        self.scale = float(1.0 if scale is None else scale)
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"MODEL.LOSSES.CE.EPSILON must be in [0, 1), got {self.epsilon}.")

    def construct(self, outputs, targets):
        return label_smoothed_cross_entropy(outputs["cls_logits"], targets, self.epsilon) * self.scale
