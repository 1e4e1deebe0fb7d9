"""MGN's losses: the label-smoothed cross entropy of every classifier and the batch-hard
triplet loss of the branches' global features, made of the toolbox's own loss functions."""
import mindspore.nn as nn
import mindspore.ops as ops

from fastreid_ms.modeling.losses.build import LOSS_REGISTRY
from fastreid_ms.modeling.losses.cross_entropy import label_smoothed_cross_entropy
from fastreid_ms.modeling.losses.triplet import batch_hard_triplet

REDUCTIONS = ("mean", "sum")
TRI_FEATS = ("global", "global_parts")


def _check_reduction(reduction):
    reduction = reduction or "mean"
    if reduction not in REDUCTIONS:
        raise ValueError(f"MODEL.LOSSES.MGN.REDUCTION must be one of {list(REDUCTIONS)}, got "
                         f"'{reduction}'.")
    return reduction


def _mgn_keys(cfg, loss):
    if "MGN" not in cfg.MODEL.LOSSES or "MGN" not in cfg.MODEL.HEADS:
        raise KeyError(f"{loss} needs MODEL.LOSSES.MGN: import the plugin "
                       "(PLUGINS: [\"projects.MGN.mgn\"]) before building the model.")
    return cfg.MODEL.LOSSES.MGN


def mgn_cross_entropy(logits, targets, epsilon: float, reduction: str = "mean"):
    """logits (N, F, K), targets (N,) -> the sum (or mean) over F of the batch-mean
    label-smoothed cross entropy of each classifier."""
    total = 0.0
    for i in range(logits.shape[1]):
        total = total + label_smoothed_cross_entropy(logits[:, i], targets, epsilon)
    if reduction == "mean":
        total = total / logits.shape[1]
    return total


def mgn_triplet_features(feats, part_stripes, tri_feats: str = "global"):
    """feats (N, F, D) in MGNHead's order -> list of (N, D') features for the triplet loss:
    each branch's global feature, plus (``global_parts``) each part branch's concatenated
    stripes (N, stripes x D)."""
    num_branches = 1 + len(part_stripes)
    out = [feats[:, b] for b in range(num_branches)]
    if tri_feats == "global_parts":
        offset = num_branches
        for n in part_stripes:
            out.append(ops.reshape(feats[:, offset:offset + n], (-1, n * feats.shape[2])))
            offset += n
    return out


@LOSS_REGISTRY.register()
class MGNCrossEntropyLoss(nn.Cell):
    """Reads ``outputs["mgn_logits"]`` (N, F, K); SCALE x the mean (or sum) over the F
    classifiers of the label-smoothed cross entropy. MODEL.LOSSES.CE.{EPSILON, SCALE},
    MODEL.LOSSES.MGN.REDUCTION."""
    loss_name = "loss_mgn_cls"

    def __init__(self, cfg=None, *, epsilon=None, scale=None, reduction=None):
        super().__init__()
        if cfg is not None:
            m = _mgn_keys(cfg, "MGNCrossEntropyLoss")
            epsilon = cfg.MODEL.LOSSES.CE.EPSILON if epsilon is None else epsilon
            scale = cfg.MODEL.LOSSES.CE.SCALE if scale is None else scale
            reduction = m.REDUCTION if reduction is None else reduction
        self.epsilon = float(0.0 if epsilon is None else epsilon)
        self.scale = float(1.0 if scale is None else scale)
        self.reduction = _check_reduction(reduction)
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"MODEL.LOSSES.CE.EPSILON must be in [0, 1), got {self.epsilon}.")

    def construct(self, outputs, targets):
        return mgn_cross_entropy(outputs["mgn_logits"], targets, self.epsilon,
                                 self.reduction) * self.scale


@LOSS_REGISTRY.register()
class MGNTripletLoss(nn.Cell):
    """Reads ``outputs["mgn_feats"]`` (N, F, D); SCALE x the mean (or sum) of the batch-hard
    triplet loss of each branch's global feature (TRI_FEATS "global_parts": also of each part
    branch's concatenated stripes). MODEL.LOSSES.TRI.{MARGIN (0: soft margin), NORM_FEAT,
    HARD_MINING, SCALE}, MODEL.LOSSES.MGN.{REDUCTION, TRI_FEATS},
    MODEL.HEADS.MGN.PART_STRIPES."""
    loss_name = "loss_mgn_triplet"

    def __init__(self, cfg=None, *, margin=None, norm_feat=None, hard_mining=None, scale=None,
                 reduction=None, tri_feats=None, part_stripes=None):
        super().__init__()
        if cfg is not None:
            m = _mgn_keys(cfg, "MGNTripletLoss")
            t = cfg.MODEL.LOSSES.TRI
            margin = t.MARGIN if margin is None else margin
            norm_feat = t.NORM_FEAT if norm_feat is None else norm_feat
            hard_mining = t.HARD_MINING if hard_mining is None else hard_mining
            scale = t.SCALE if scale is None else scale
            reduction = m.REDUCTION if reduction is None else reduction
            tri_feats = m.TRI_FEATS if tri_feats is None else tri_feats
            part_stripes = cfg.MODEL.HEADS.MGN.PART_STRIPES if part_stripes is None else part_stripes
        self.margin = float(0.0 if margin is None else margin)
        self.norm_feat = bool(norm_feat)
        self.hard_mining = True if hard_mining is None else bool(hard_mining)
        self.scale = float(1.0 if scale is None else scale)
        self.reduction = _check_reduction(reduction)
        self.tri_feats = tri_feats or "global"
        self.part_stripes = tuple(int(p) for p in (part_stripes if part_stripes is not None
                                                   else (2, 3)))
        if self.margin < 0:
            raise ValueError(f"MODEL.LOSSES.TRI.MARGIN must be >= 0 (0: soft margin), got {self.margin}.")
        if self.tri_feats not in TRI_FEATS:
            raise ValueError(f"MODEL.LOSSES.MGN.TRI_FEATS must be one of {list(TRI_FEATS)}, got "
                             f"'{self.tri_feats}'.")

    def construct(self, outputs, targets):
        feats = mgn_triplet_features(outputs["mgn_feats"], self.part_stripes, self.tri_feats)
        total = 0.0
        for f in feats:
            total = total + batch_hard_triplet(f, targets, self.margin, self.norm_feat,
                                               self.hard_mining)
        if self.reduction == "mean":
            total = total / len(feats)
        return total * self.scale
