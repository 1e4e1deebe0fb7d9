"""META_ARCH_REGISTRY: class(cfg) -> nn.Cell; training: dict of named, scaled losses;
eval: dict of features."""
from ...utils.registry import Registry

META_ARCH_REGISTRY = Registry("META_ARCH")


def build_model(cfg):
    """The meta-architecture MODEL.META_ARCHITECTURE names, built from ``cfg``."""
    return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
