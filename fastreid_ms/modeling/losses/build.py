"""LOSS_REGISTRY: class(cfg) -> nn.Cell; construct(head outputs dict, targets (N,)) -> scalar,
already multiplied by its own SCALE. MODEL.LOSSES.NAME lists the ones to sum."""
from ...utils.registry import Registry

LOSS_REGISTRY = Registry("LOSS")
