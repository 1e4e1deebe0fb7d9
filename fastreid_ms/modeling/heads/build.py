"""HEAD_REGISTRY: class(cfg) -> nn.Cell; training: dict of outputs for the losses,
eval: dict of features ({"global": (N, D)} and optionally {"local": (N, P, C)})."""
from ...utils.registry import Registry

HEAD_REGISTRY = Registry("HEAD")


def build_heads(cfg):
    """The head MODEL.HEADS.NAME names."""
    return HEAD_REGISTRY.get(cfg.MODEL.HEADS.NAME)(cfg)
