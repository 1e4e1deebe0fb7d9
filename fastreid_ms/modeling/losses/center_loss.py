"""Center loss (Wen et al.), an option of the paper's code."""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import Normal, initializer

from .build import LOSS_REGISTRY


def center_distance(features, centers, targets):
    """features (N, D), centers (K, D), targets (N,) -> mean over the batch of ||x - c_y||^2."""
    c = ops.gather(centers, targets.astype("int32"), 0)
    diff = features.astype("float32") - c
    return (diff * diff).sum(axis=1).mean()


@LOSS_REGISTRY.register()
class CenterLoss(nn.Cell):
    """Pulls ``outputs["global"]`` (N, D) towards a learnt centre per identity;
    MODEL.LOSSES.CENTER.SCALE. The centres (num_classes, D) are parameters trained by the
    model's optimizer (the paper's code gives them their own SGD at lr 0.5)."""
    loss_name = "loss_center"
    needs_num_classes = True

    def __init__(self, cfg=None, *, num_classes=None, feat_dim=None, scale=None):
        super().__init__()
        if cfg is not None:
            num_classes = cfg.MODEL.HEADS.NUM_CLASSES if num_classes is None else num_classes
            if feat_dim is None:
                emb = cfg.MODEL.HEADS.EMBEDDING_DIM
                feat_dim = emb if emb > 0 else cfg.MODEL.BACKBONE.FEAT_DIM
            scale = cfg.MODEL.LOSSES.CENTER.SCALE if scale is None else scale
        if not num_classes or int(num_classes) <= 0:
            raise ValueError(f"CenterLoss needs MODEL.HEADS.NUM_CLASSES > 0, got {num_classes}.")
        self.scale = float(5e-4 if scale is None else scale)
        self.centers = ms.Parameter(initializer(Normal(1.0), (int(num_classes), int(feat_dim)),
                                                ms.float32), name="centers")

    def construct(self, outputs, targets):
        return center_distance(outputs["global"], self.centers, targets) * self.scale
