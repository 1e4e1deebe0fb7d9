"""Batch-hard triplet loss (Hermans et al.) and the mining helpers the local loss reuses."""
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common import dtype as mstype

from .build import LOSS_REGISTRY

# Stands in for "no such pair" in masked minima; far above any feature distance.
_FAR = 1e6


def l2_normalize(x, axis=-1):
    """x / ||x|| along ``axis`` (1e-12 floor on the squared norm), computed and returned in
    float32: in float16 (AMP O2 / O3) the floor rounds to 0 (an all-zero part gives NaN) and a
    2048-channel sum of squares overflows past 65504."""
    x = x.astype(mstype.float32)
    # ops.maximum, not ops.clamp(min=...): MindSpore's ONNX exporter rejects a clamp without max.
    return x / ops.sqrt(ops.maximum((x * x).sum(axis=axis, keepdims=True), 1e-12))


def pairwise_euclidean(x, y):
    """x (M, D), y (N, D) -> (M, N) Euclidean distances, sqrt(max(d^2, 1e-12))."""
    xx = (x * x).sum(axis=1, keepdims=True)
    yy = (y * y).sum(axis=1, keepdims=True).T
    d2 = xx + yy - 2.0 * ops.matmul(x, y.T)
    return ops.sqrt(ops.clamp(d2, min=1e-12))


def same_identity(targets):
    """targets (N,) -> bool (N, N): True where row and column share an identity (diagonal too)."""
    t = targets.reshape(-1, 1)
    return ops.equal(t, t.T)


def valid_anchors(is_pos):
    """float (N,): 1 for anchors with another image of their identity AND an image of another
    identity in the batch, else 0. Only those anchors form a triplet."""
    n = is_pos.shape[0]
    num_pos = is_pos.astype("float32").sum(axis=1)
    return ops.logical_and(num_pos > 1.0, num_pos < n).astype("float32")


def hard_example_mining(dist, targets):
    """Batch-hard mining on a distance matrix.

    dist (N, N), targets (N,) -> (dist_ap (N,), dist_an (N,), idx_ap int (N,), idx_an int (N,),
    valid float (N,)): for each anchor the farthest image of its identity (itself counts, as
    in the seed) and the closest image of another identity. Anchors without a negative get
    dist_an = 1e6 and valid 0.
    """
    is_pos = same_identity(targets)
    neg_fill = ops.full_like(dist, _FAR)
    pos_fill = ops.full_like(dist, -1.0)
    ap_candidates = ops.where(is_pos, dist, pos_fill)
    an_candidates = ops.where(is_pos, neg_fill, dist)
    dist_ap = ops.amax(ap_candidates, axis=1)
    dist_an = ops.amin(an_candidates, axis=1)
    idx_ap = ops.argmax(ap_candidates, dim=1).astype("int32")
    idx_an = ops.argmin(an_candidates, axis=1).astype("int32")
    return dist_ap, dist_an, idx_ap, idx_an, valid_anchors(is_pos)


def _softmax_weights(dist, mask):
    max_v = (dist * mask).max(axis=1, keepdims=True)
    e = ops.exp(dist - max_v) * mask
    return e / (e.sum(axis=1, keepdims=True) + 1e-6)


def weighted_example_mining(dist, targets):
    """Soft mining (fast-reid's HARD_MINING False): softmax-weighted positive distance and
    softmin-weighted negative distance. Returns (dist_ap (N,), dist_an (N,), valid (N,))."""
    is_pos_b = same_identity(targets)
    is_pos = is_pos_b.astype(dist.dtype)
    is_neg = 1.0 - is_pos
    dist_ap = dist * is_pos
    dist_an = dist * is_neg
    w_ap = _softmax_weights(dist_ap, is_pos)
    w_an = _softmax_weights(-dist_an, is_neg)
    return (dist_ap * w_ap).sum(axis=1), (dist_an * w_an).sum(axis=1), valid_anchors(is_pos_b)


def margin_ranking(dist_ap, dist_an, valid, margin):
    """Mean over valid anchors of max(0, d_ap - d_an + margin), or of the soft margin
    log(1 + exp(d_ap - d_an)) when ``margin`` <= 0. 0 when no anchor is valid."""
    if margin > 0:
        per_anchor = ops.relu(dist_ap - dist_an + margin)
    else:
        per_anchor = ops.softplus(dist_ap - dist_an)
    count = ops.clamp(valid.sum(), min=1.0)
    return (per_anchor * valid).sum() / count


def batch_hard_triplet(features, targets, margin, norm_feat=False, hard_mining=True):
    """features (N, D), targets (N,) -> scalar batch-hard (or soft-mined) triplet loss."""
    features = features.astype("float32")
    if norm_feat:
        features = l2_normalize(features)
    dist = pairwise_euclidean(features, features)
    if hard_mining:
        dist_ap, dist_an, _, _, valid = hard_example_mining(dist, targets)
    else:
        dist_ap, dist_an, valid = weighted_example_mining(dist, targets)
    return margin_ranking(dist_ap, dist_an, valid, margin)


@LOSS_REGISTRY.register()
class TripletLoss(nn.Cell):
    """Batch-hard triplet loss on ``outputs["global"]`` (N, D);
    MODEL.LOSSES.TRI.{MARGIN, NORM_FEAT, HARD_MINING, SCALE}. MARGIN 0 selects the soft margin.

    An anchor takes part only when the batch holds another image of its identity and an
    image of another identity; the loss is the mean over those anchors and 0 (no NaN) when
    there are none, e.g. a batch of one image or of one identity.
    """
    loss_name = "loss_triplet"

    def __init__(self, cfg=None, *, margin=None, norm_feat=None, hard_mining=None, scale=None):
        super().__init__()
        if cfg is not None:
            t = cfg.MODEL.LOSSES.TRI
            margin = t.MARGIN if margin is None else margin
            norm_feat = t.NORM_FEAT if norm_feat is None else norm_feat
            hard_mining = t.HARD_MINING if hard_mining is None else hard_mining
            scale = t.SCALE if scale is None else scale
        self.margin = float(0.3 if margin is None else margin)
        self.norm_feat = bool(norm_feat)
        self.hard_mining = True if hard_mining is None else bool(hard_mining)
        self.scale = float(1.0 if scale is None else scale)
        if self.margin < 0:
            raise ValueError(f"MODEL.LOSSES.TRI.MARGIN must be >= 0 (0: soft margin), got {self.margin}.")

    def construct(self, outputs, targets):
        loss = batch_hard_triplet(outputs["global"], targets, self.margin, self.norm_feat,
                                  self.hard_mining)
        return loss * self.scale
