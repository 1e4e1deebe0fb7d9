"""Config keys of PCB (added to the tree when the plugin is imported)."""
from fastreid_ms.config import CfgNode as CN
from fastreid_ms.config import register_config_extension


@register_config_extension
def add_pcb_config(cfg):
    """Add the PCB keys to ``cfg`` (values already present are never overwritten)."""
    # The backbone map is cut into NUM_STRIPES horizontal stripes (the paper: 6). The map
    # height should be a multiple of it (384x128 input, last stride 1 -> 24 rows).
    cfg.MODEL.HEADS.NUM_STRIPES = 6
    # Each stripe's pooled column vector g (FEAT_DIM) is reduced by a 1x1 conv + BN + ReLU
    # to h (STRIPE_DIM), the input of that stripe's classifier.
    cfg.MODEL.HEADS.STRIPE_DIM = 256
    # Test descriptor: the concatenated "pooled" vectors g (NUM_STRIPES x FEAT_DIM; the paper
    # finds it slightly more accurate) or the "reduced" vectors h (NUM_STRIPES x STRIPE_DIM).
    cfg.MODEL.HEADS.STRIPE_TEST_FEAT = "pooled"

    # Sum over the stripes of the cross entropy of each stripe's classifier.
    cfg.MODEL.LOSSES.PCB_CE = CN()
    # Label smoothing epsilon (0: the paper's plain cross entropy).
    cfg.MODEL.LOSSES.PCB_CE.EPSILON = 0.0
    cfg.MODEL.LOSSES.PCB_CE.SCALE = 1.0
