"""Circle losses (Sun et al., CVPR 2020): the classification form on cosine logits
(fast-reid's "CircleSoftmax", used by its SBS baseline) and the pairwise form on a batch.

Both re-weight each similarity by how far it is from its optimum (weights treated as
constants, no gradient through them): for a positive similarity s_p the weight is
max(0, 1 + m - s_p) and the target 1 - m; for a negative s_n the weight max(0, s_n + m) and
the target m.
"""
import mindspore.nn as nn
import mindspore.ops as ops

from .build import LOSS_REGISTRY
from .cross_entropy import label_smoothed_cross_entropy
from .triplet import l2_normalize, same_identity, valid_anchors

# Stands in for log(0) in a masked log-sum-exp.
_NEG = -1e4


def circle_logits(cosine, targets, scale, margin):
    """cosine (N, K) in [-1, 1], targets int (N,) -> (N, K) logits: the target column
    ``scale * a_p * (s - (1 - m))`` with ``a_p = max(0, 1 + m - s)``, the other columns
    ``scale * a_n * (s - m)`` with ``a_n = max(0, s + m)``."""
    cosine = cosine.astype("float32")
    one_hot = ops.one_hot(targets.astype("int32"), cosine.shape[1], 1.0, 0.0).astype("float32")
    detached = ops.stop_gradient(cosine)
    alpha_p = ops.relu(1.0 + margin - detached)
    alpha_n = ops.relu(detached + margin)
    s_p = scale * alpha_p * (cosine - (1.0 - margin))
    s_n = scale * alpha_n * (cosine - margin)
    return one_hot * s_p + (1.0 - one_hot) * s_n


@LOSS_REGISTRY.register()
class CircleSoftmaxLoss(nn.Cell):
    """Label-smoothed cross entropy on the circle logits of ``outputs["cls_cosine"]`` (N, K)
    (EmbeddingHead with CLS_LAYER "cosine"); MODEL.LOSSES.CIRCLE_SOFTMAX.{GAMMA (the scale
    s, fast-reid's HEADS.SCALE 64), MARGIN (0.35), EPSILON, SCALE}."""
    loss_name = "loss_cls"

    def __init__(self, cfg=None, *, gamma=None, margin=None, epsilon=None, scale=None):
        super().__init__()
        if cfg is not None:
            c = cfg.MODEL.LOSSES.CIRCLE_SOFTMAX
            gamma = c.GAMMA if gamma is None else gamma
            margin = c.MARGIN if margin is None else margin
            epsilon = c.EPSILON if epsilon is None else epsilon
            scale = c.SCALE if scale is None else scale
        self.gamma = float(64.0 if gamma is None else gamma)
        self.margin = float(0.35 if margin is None else margin)
        self.epsilon = float(0.0 if epsilon is None else epsilon)
        self.scale = float(1.0 if scale is None else scale)
        if not self.gamma > 0:
            raise ValueError(f"MODEL.LOSSES.CIRCLE_SOFTMAX.GAMMA must be > 0, got {self.gamma}.")
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"MODEL.LOSSES.CIRCLE_SOFTMAX.EPSILON must be in [0, 1), got "
                             f"{self.epsilon}.")

    def construct(self, outputs, targets):
        logits = circle_logits(outputs["cls_cosine"], targets, self.gamma, self.margin)
        return label_smoothed_cross_entropy(logits, targets, self.epsilon) * self.scale


def _masked_logsumexp(x, mask):
    """log sum_j exp(x_ij) over the j where mask (float 0/1) is 1; about -1e4 where none is."""
    x = x * mask + _NEG * (1.0 - mask)
    top = ops.stop_gradient(x.max(axis=1, keepdims=True))
    return (ops.log(ops.exp(x - top).sum(axis=1, keepdims=True)) + top).reshape(-1)


def pairwise_circle(features, targets, gamma, margin):
    """features (N, D), targets (N,) -> scalar pairwise circle loss: per anchor
    ``softplus(logsumexp_n gamma a_n (s_n - m) + logsumexp_p -gamma a_p (s_p - (1 - m)))``
    over the cosine similarities to its positives (itself excluded) and negatives, averaged
    over the anchors that have both (0 when none has)."""
    x = l2_normalize(features.astype("float32"), axis=1)
    sim = ops.matmul(x, x.T)
    is_pos_b = same_identity(targets)
    n = sim.shape[0]
    eye = ops.eye(n, n, sim.dtype)
    is_pos = is_pos_b.astype(sim.dtype) - eye
    is_neg = 1.0 - is_pos_b.astype(sim.dtype)
    detached = ops.stop_gradient(sim)
    alpha_p = ops.relu(1.0 + margin - detached)
    alpha_n = ops.relu(detached + margin)
    logit_p = -gamma * alpha_p * (sim - (1.0 - margin))
    logit_n = gamma * alpha_n * (sim - margin)
    per_anchor = ops.softplus(_masked_logsumexp(logit_p, is_pos)
                              + _masked_logsumexp(logit_n, is_neg))
    valid = valid_anchors(is_pos_b)
    return (per_anchor * valid).sum() / ops.clamp(valid.sum(), min=1.0)


@LOSS_REGISTRY.register()
class CircleLoss(nn.Cell):
    """Pairwise circle loss on ``outputs["global"]`` (N, D); MODEL.LOSSES.CIRCLE.{GAMMA (128),
    MARGIN (0.25), SCALE}. An alternative to TripletLoss (fast-reid's "CircleLoss")."""
    loss_name = "loss_circle"

    def __init__(self, cfg=None, *, gamma=None, margin=None, scale=None):
        super().__init__()
        if cfg is not None:
            c = cfg.MODEL.LOSSES.CIRCLE
            gamma = c.GAMMA if gamma is None else gamma
            margin = c.MARGIN if margin is None else margin
            scale = c.SCALE if scale is None else scale
        self.gamma = float(128.0 if gamma is None else gamma)
        self.margin = float(0.25 if margin is None else margin)
        self.scale = float(1.0 if scale is None else scale)
        if not self.gamma > 0:
            raise ValueError(f"MODEL.LOSSES.CIRCLE.GAMMA must be > 0, got {self.gamma}.")

    def construct(self, outputs, targets):
        return pairwise_circle(outputs["global"], targets, self.gamma, self.margin) * self.scale
