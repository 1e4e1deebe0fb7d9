"""AlignedReID++ local triplet loss: batch-hard pairs chosen by the global distance, ranked
by the DMLI distance of their part features."""
import mindspore.nn as nn
import mindspore.ops as ops

from fastreid_ms.modeling.losses import (LOSS_REGISTRY, hard_example_mining, l2_normalize,
                                         margin_ranking, pairwise_euclidean)

from .dmli_graph import dmli_paired


def aligned_local_triplet(global_feat, local_feat, targets, margin, norm_feat=False):
    """global_feat (N, D), local_feat (N, P, C), targets (N,) -> scalar.

    For each anchor the hardest positive and negative are mined on the global Euclidean
    distance (of L2-normalised features when ``norm_feat``); the loss is the margin ranking
    (soft margin when ``margin`` <= 0) of the anchor's DMLI distances to those two images,
    averaged over the anchors that have both (0 when none, e.g. a batch of one image).
    """
    g = global_feat.astype("float32")
    if norm_feat:
        g = l2_normalize(g)
    dist = pairwise_euclidean(g, g)
    _, _, idx_ap, idx_an, valid = hard_example_mining(ops.stop_gradient(dist), targets)
    local = local_feat.astype("float32")
    local_ap = dmli_paired(local, ops.gather(local, idx_ap, 0))
    local_an = dmli_paired(local, ops.gather(local, idx_an, 0))
    return margin_ranking(local_ap, local_an, valid, margin)


@LOSS_REGISTRY.register()
class AlignedLocalTripletLoss(nn.Cell):
    """Local triplet on ``outputs["local"]`` (N, P, C), pairs mined on ``outputs["global"]``;
    MODEL.LOSSES.LOCAL_TRI.{MARGIN, SCALE} (MARGIN 0: soft margin); the mining distance uses
    L2-normalised global features when MODEL.LOSSES.TRI.NORM_FEAT is set."""
    loss_name = "loss_local"

    def __init__(self, cfg=None, *, margin=None, scale=None, norm_feat=None):
        super().__init__()
        if cfg is not None:
            margin = cfg.MODEL.LOSSES.LOCAL_TRI.MARGIN if margin is None else margin
            scale = cfg.MODEL.LOSSES.LOCAL_TRI.SCALE if scale is None else scale
            norm_feat = cfg.MODEL.LOSSES.TRI.NORM_FEAT if norm_feat is None else norm_feat
        self.margin = float(0.3 if margin is None else margin)
        self.scale = float(1.0 if scale is None else scale)
        self.norm_feat = bool(norm_feat)
        if self.margin < 0:
            raise ValueError(f"MODEL.LOSSES.LOCAL_TRI.MARGIN must be >= 0 (0: soft margin), got "
                             f"{self.margin}.")

    def construct(self, outputs, targets):
        loss = aligned_local_triplet(outputs["global"], outputs["local"], targets, self.margin,
                                     self.norm_feat)
        return loss * self.scale
