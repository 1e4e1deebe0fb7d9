"""EmbeddingHead: pooled backbone feature, optional embedding and BN neck, linear classifier."""
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import HeNormal, Normal

from .build import HEAD_REGISTRY

POOL_LAYERS = ("avgpool", "maxpool")


def global_pool(x, pool_layer):
    """(N, C, H, W) -> (N, C) by average or max over the spatial positions."""
    if pool_layer == "maxpool":
        return ops.amax(x, axis=(2, 3))
    return ops.mean(x, axis=(2, 3))


@HEAD_REGISTRY.register()
class EmbeddingHead(nn.Cell):
    """Global re-ID head.

    feature map (N, C, H, W) -> pool -> (N, C) [-> 1x1 embedding (N, D)] [-> BN neck] -> classifier.
    Training returns ``{"cls_logits": (N, num_classes), "global": (N, D)}`` ("global" is the
    feature before the BN neck, for the triplet loss); eval returns ``{"global": (N, D)}``
    (before or after the neck as NECK_FEAT says).

    Built from the config (``EmbeddingHead(cfg)``) or with plain arguments; a keyword given
    explicitly wins over the config.
    """

    def __init__(self, cfg=None, *, feat_dim=None, num_classes=None, embedding_dim=None,
                 with_bnneck=None, neck_feat=None, pool_layer=None):
        super().__init__()
        if cfg is not None:
            h = cfg.MODEL.HEADS
            feat_dim = cfg.MODEL.BACKBONE.FEAT_DIM if feat_dim is None else feat_dim
            num_classes = h.NUM_CLASSES if num_classes is None else num_classes
            embedding_dim = h.EMBEDDING_DIM if embedding_dim is None else embedding_dim
            with_bnneck = h.WITH_BNNECK if with_bnneck is None else with_bnneck
            neck_feat = h.NECK_FEAT if neck_feat is None else neck_feat
            pool_layer = h.POOL_LAYER if pool_layer is None else pool_layer
            if h.CLS_LAYER != "linear":
                raise ValueError(f"MODEL.HEADS.CLS_LAYER '{h.CLS_LAYER}' is not supported by "
                                 "EmbeddingHead; use 'linear'.")
        if feat_dim is None:
            raise ValueError("EmbeddingHead needs feat_dim (MODEL.BACKBONE.FEAT_DIM).")
        num_classes = int(num_classes or 0)
        embedding_dim = int(embedding_dim or 0)
        pool_layer = pool_layer or "avgpool"
        neck_feat = neck_feat or "before"
        if pool_layer not in POOL_LAYERS:
            raise ValueError(f"MODEL.HEADS.POOL_LAYER '{pool_layer}' is not supported; use one of "
                             f"{list(POOL_LAYERS)}.")
        if neck_feat not in ("before", "after"):
            raise ValueError(f"MODEL.HEADS.NECK_FEAT must be 'before' or 'after', got '{neck_feat}'.")
        self.pool_layer = pool_layer
        self.with_bnneck = bool(with_bnneck)
        self.neck_after = neck_feat == "after"
        self.num_classes = num_classes
        self.with_embedding = embedding_dim > 0
        dim = int(feat_dim)
        if self.with_embedding:
            self.embedding = nn.Conv2d(dim, embedding_dim, 1, has_bias=False,
                                       weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))
            dim = embedding_dim
        if self.with_bnneck:
            self.bnneck = nn.BatchNorm1d(dim, momentum=0.9, eps=1e-5)
            self.bnneck.beta.requires_grad = False  # bag of tricks: no shift before the classifier
        self.out_dim = dim
        if num_classes > 0:
            self.classifier = nn.Dense(dim, num_classes, has_bias=not self.with_bnneck,
                                       weight_init=Normal(0.001), bias_init="zeros")

    def construct(self, features):
        """features: (N, C, H, W) backbone map."""
        x = features
        if self.with_embedding:
            x = self.embedding(x)
        feat = global_pool(x, self.pool_layer)
        neck = feat
        if self.with_bnneck:
            neck = self.bnneck(feat)
        if not self.training:
            if self.neck_after:
                return {"global": neck}
            return {"global": feat}
        logits = self.classifier(neck)
        return {"cls_logits": logits, "global": feat}
