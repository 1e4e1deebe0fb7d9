"""LOSS_REGISTRY: class(cfg) -> nn.Cell; construct(head outputs dict, targets (N,)) -> scalar,
already multiplied by its own SCALE. MODEL.LOSSES.NAME lists the ones to sum."""
from ...utils.registry import Registry

LOSS_REGISTRY = Registry("LOSS")


def build_losses(cfg, num_classes) -> list:
    """The losses of MODEL.LOSSES.NAME, each ``LOSS_REGISTRY.get(name)(cfg)``. A loss that
    needs the class count (``needs_num_classes``, e.g. the center loss) cannot be built
    without it and is left out when ``num_classes`` <= 0 (a feature-extraction model)."""
    names = list(cfg.MODEL.LOSSES.NAME)
    if not names:
        raise ValueError("MODEL.LOSSES.NAME is empty: list at least one loss.")
    losses = []
    for name in names:
        loss_cls = LOSS_REGISTRY.get(name)
        if int(num_classes or 0) <= 0 and getattr(loss_cls, "needs_num_classes", False):
            continue
        losses.append(loss_cls(cfg))
    return losses


def loss_names(losses) -> tuple:
    """Each loss's ``loss_name`` (its class name without one), in order; ValueError when two
    share one (the model returns the losses as a dict keyed by these)."""
    names = tuple(getattr(l, "loss_name", type(l).__name__) for l in losses)
    if len(set(names)) != len(names):
        raise ValueError(f"Two losses share a loss_name: {list(names)}; each loss in "
                         "MODEL.LOSSES.NAME must appear once.")
    return names
