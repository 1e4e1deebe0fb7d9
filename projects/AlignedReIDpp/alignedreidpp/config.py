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
    # Initial weights as the seed's: classifier (end_point) N(0, CLS_INIT_STD), bias 0; local
    # 1x1 conv "normal" = N(0, 0.01) (MindSpore 1.3's Conv2d default), bias 0, or "kaiming"
    # (He normal, fan_out), the choice of fastreid_ms before the seed recipe (with
    # CLS_INIT_STD 0.001).
    cfg.MODEL.HEADS.CLS_INIT_STD = 0.01
    cfg.MODEL.HEADS.LOCAL_CONV_INIT = "normal"

    # Local triplet loss on DMLI distances of the hardest pairs chosen by the global distance.
    cfg.MODEL.LOSSES.LOCAL_TRI = CN()
    cfg.MODEL.LOSSES.LOCAL_TRI.MARGIN = 0.3
    cfg.MODEL.LOSSES.LOCAL_TRI.SCALE = 1.0

    # Test distance: "global", "local" or "global_local" (their sum, as the seed reports), or
    # "all": the paper's five-column table (Global, Local unaligned, DMLI, Global+DMLI,
    # Global+DMLI re-ranked) from one feature extraction (tools/distance_table.py).
    cfg.TEST.DISTANCE = "global_local"
    cfg.TEST.LOCAL = CN()
    # True: DMLI shortest-path alignment; False: the unaligned sum of part distances.
    cfg.TEST.LOCAL.ALIGNED = True
    # Exact evaluation with pruning (pruning.py): bounds of every pair's DMLI from the parts
    # projected onto PRUNE_DIM principal directions (0: dmli_bounds.auto_rank), the exact
    # DMLI only where a metric or the re-ranking can depend on it, second bounds from float16
    # parts in between. The same metrics as False (every pair computed); applies when
    # TEST.RERANK.CANDIDATES is 0 and the parts have at least 512 channels (below that,
    # computing every pair is cheaper and is what happens). On by default: at the default
    # test feature (8 x 2048) it is the fast exact path (README, evaluation benchmark).
    cfg.TEST.LOCAL.PRUNE = True
    cfg.TEST.LOCAL.PRUNE_DIM = 0
