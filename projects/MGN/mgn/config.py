"""Config keys of MGN (added to the tree when the plugin is imported)."""
from fastreid_ms.config import CfgNode as CN
from fastreid_ms.config import register_config_extension


@register_config_extension
def add_mgn_config(cfg):
    """Add the MGN keys to ``cfg`` (values already present are never overwritten)."""
    cfg.MODEL.HEADS.MGN = CN()
    # Stripes of the part branches: one branch per entry, its layer4 map cut into that many
    # horizontal stripes (the paper: a 2-part and a 3-part branch). The global branch always
    # exists; every branch also gives its own globally pooled feature.
    cfg.MODEL.HEADS.MGN.PART_STRIPES = [2, 3]
    # Stride of layer4 in the part branches (the paper: 1, a map twice as tall as the global
    # branch's). The global branch's layer4 uses MODEL.BACKBONE.LAST_STRIDE.
    cfg.MODEL.HEADS.MGN.PART_LAST_STRIDE = 1
    # Pooling of the whole map and of each stripe: "max" (the paper) or "avg".
    cfg.MODEL.HEADS.MGN.POOL = "max"
    # Each pooled feature has its own 1x1 conv + BN (+ ReLU) reducing it to this many channels;
    # the test feature is the concatenation of all of them (3 + 2 + 3 = 8 x 256 = 2048).
    cfg.MODEL.HEADS.MGN.REDUCTION_DIM = 256
    # ReLU after the reduction's BN (the paper's 1x1 conv + BN + ReLU).
    cfg.MODEL.HEADS.MGN.REDUCTION_RELU = True
    # Std of the normal init of the (bias-free) classifiers.
    cfg.MODEL.HEADS.MGN.CLS_INIT_STD = 0.01

    # MGNCrossEntropyLoss reads MODEL.LOSSES.CE.{EPSILON, SCALE}, MGNTripletLoss reads
    # MODEL.LOSSES.TRI.{MARGIN, NORM_FEAT, HARD_MINING, SCALE}; these keys say how the
    # per-feature terms are combined.
    cfg.MODEL.LOSSES.MGN = CN()
    # "mean" over the terms (fast-reid: CE x 1/8, triplet x 1/number of triplet features) or
    # "sum" (the paper's total loss).
    cfg.MODEL.LOSSES.MGN.REDUCTION = "mean"
    # Features the triplet loss sees: "global" (the globally pooled reduced feature of each
    # branch, the paper's) or "global_parts" (also each part branch's concatenated stripes,
    # as fast-reid's MGN does: 3 + 2 = 5 triplet terms).
    cfg.MODEL.LOSSES.MGN.TRI_FEATS = "global"
