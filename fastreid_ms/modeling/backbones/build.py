"""BACKBONE_REGISTRY: fn(cfg) -> nn.Cell mapping images (N, 3, H, W) to a feature map (N, C, h, w)."""
from ...utils.registry import Registry

BACKBONE_REGISTRY = Registry("BACKBONE")


def build_backbone(cfg):
    """The backbone MODEL.BACKBONE.NAME names."""
    return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg)
