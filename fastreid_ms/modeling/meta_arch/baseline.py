"""Baseline meta-architecture: backbone -> head -> the losses MODEL.LOSSES.NAME lists."""
import mindspore.nn as nn

from ..backbones import build_backbone
from ..heads import build_heads
from ..losses import build_losses, loss_names
from .build import META_ARCH_REGISTRY


@META_ARCH_REGISTRY.register()
class Baseline(nn.Cell):
    """images (N, 3, H, W) -> backbone map -> head.

    Training: ``model(images, targets)`` with int targets (N,) returns a dict
    ``{loss_name: scaled scalar}`` (e.g. "loss_cls", "loss_triplet", "loss_local"); the total
    loss is their sum. Eval: ``model(images)`` returns the head's feature dict, e.g.
    ``{"global": (N, D)}`` plus ``{"local": (N, P, C)}`` for AlignedReID++.

    Built from the config, or from ready cells: ``Baseline(backbone=..., heads=..., losses=[...])``.
    MODEL.HEADS.NUM_CLASSES must be > 0 to train (the trainer fills it from the training set);
    a model built with 0 classes can still extract features.
    """

    def __init__(self, cfg=None, *, backbone=None, heads=None, losses=None, num_classes=None):
        super().__init__()
        if cfg is not None:
            backbone = build_backbone(cfg) if backbone is None else backbone
            out_ch = getattr(backbone, "out_channels", None)
            if out_ch is not None and out_ch != cfg.MODEL.BACKBONE.FEAT_DIM:
                raise ValueError(
                    f"MODEL.BACKBONE.FEAT_DIM is {cfg.MODEL.BACKBONE.FEAT_DIM} but the backbone "
                    f"(DEPTH {cfg.MODEL.BACKBONE.DEPTH}, BASE_WIDTH {cfg.MODEL.BACKBONE.BASE_WIDTH}) "
                    f"outputs {out_ch} channels: set MODEL.BACKBONE.FEAT_DIM {out_ch}.")
            heads = build_heads(cfg) if heads is None else heads
            num_classes = cfg.MODEL.HEADS.NUM_CLASSES if num_classes is None else num_classes
            if losses is None:
                losses = build_losses(cfg, num_classes)
        if backbone is None or heads is None:
            raise ValueError("Baseline needs a config or both backbone= and heads=.")
        self.backbone = backbone
        self.heads = heads
        self.num_classes = int(num_classes if num_classes is not None
                               else getattr(heads, "num_classes", 0) or 0)
        losses = list(losses or [])
        self.loss_names = loss_names(losses)
        self.losses = nn.CellList(losses)
        self._no_class_msg = (
            "Baseline cannot train with MODEL.HEADS.NUM_CLASSES = "
            f"{self.num_classes}: set it to the number of training identities (the trainer fills "
            "it from the training set), or use the model in eval mode (set_train(False)) to "
            "extract features.")

    def set_train(self, mode=True):
        if mode and self.num_classes <= 0:
            raise ValueError(self._no_class_msg)
        return super().set_train(mode)

    def construct(self, images, targets=None):
        features = self.backbone(images)
        outputs = self.heads(features)
        if not self.training:
            return outputs
        if self.num_classes <= 0:
            raise ValueError(self._no_class_msg)
        losses = {}
        for i in range(len(self.loss_names)):
            losses[self.loss_names[i]] = self.losses[i](outputs, targets)
        return losses
