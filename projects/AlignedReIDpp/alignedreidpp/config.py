"""Config keys of AlignedReID++ (added to the tree when the plugin is imported)."""
from fastreid_ms.config import CfgNode as CN
from fastreid_ms.config import register_config_extension


@register_config_extension
def add_alignedreid_config(cfg):
    """Add the AlignedReID++ keys to ``cfg`` (existing values are never overwritten)."""
    # Local branch: BN -> ReLU -> max over width -> 1x1 conv to LOCAL_DIM -> L2 per part.
    cfg.MODEL.HEADS.LOCAL_DIM = 128
    # Local feature at test time: "backbone" (the paper's code: the backbone map max-pooled
    # over the width, L2-normalised per part, P x FEAT_DIM) or "branch" (P x LOCAL_DIM).
    cfg.MODEL.HEADS.LOCAL_TEST_FEAT = "backbone"

    # Local triplet loss on DMLI distances of the hardest pairs chosen by the global distance.
    cfg.MODEL.LOSSES.LOCAL_TRI = CN()
    cfg.MODEL.LOSSES.LOCAL_TRI.MARGIN = 0.3
    cfg.MODEL.LOSSES.LOCAL_TRI.SCALE = 1.0

    # Test distance: "global", "local" or "global_local" (their sum, as the seed reports).
    cfg.TEST.DISTANCE = "global_local"
    cfg.TEST.LOCAL = CN()
    # True: DMLI shortest-path alignment; False: the unaligned sum of part distances.
    cfg.TEST.LOCAL.ALIGNED = True
