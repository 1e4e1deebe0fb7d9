"""EmbeddingHead: pooled backbone feature, optional embedding and BN neck, a classifier."""
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import HeNormal, Normal

from ..losses.triplet import l2_normalize
from .build import HEAD_REGISTRY
from .pooling import build_pooling

# "linear": logits W x (+ b); "cosine" (fast-reid's name "CircleSoftmax" too): the cosine of
# the L2-normalised feature and class weights, for margin losses such as CircleSoftmaxLoss.
CLS_LAYERS = {"linear": "linear", "Linear": "linear", "cosine": "cosine",
              "CircleSoftmax": "cosine"}


@HEAD_REGISTRY.register()
class EmbeddingHead(nn.Cell):
    """Global re-ID head (with the BN neck, the "BNNeck" of bag of tricks).

    feature map (N, C, H, W) -> pool (MODEL.HEADS.POOL_LAYER, a POOLING_REGISTRY name) -> (N, C)
    [-> 1x1 embedding (N, D)] [-> BN neck] -> classifier on the neck output.

    Training returns ``{"cls_logits": (N, num_classes), "global": (N, D)}`` with a linear
    classifier (no bias behind a BN neck), ``{"cls_cosine": (N, num_classes), "global": ...}``
    with the cosine one (CLS_LAYER "cosine"); "global" is the feature the triplet loss sees:
    before the BN neck, or after it with TRIPLET_FEAT "after" (fast-reid's SBS). Eval returns
    ``{"global": (N, D)}``, before or after the neck as NECK_FEAT says (bag of tricks: after).

    Built from the config (``EmbeddingHead(cfg)``) or with plain arguments; a keyword given
    explicitly wins over the config.
    """

    def __init__(self, cfg=None, *, feat_dim=None, num_classes=None, embedding_dim=None,
                 with_bnneck=None, neck_feat=None, pool_layer=None, gem_p=None, cls_layer=None,
                 triplet_feat=None):
        super().__init__()
        if cfg is not None:
            h = cfg.MODEL.HEADS
            feat_dim = cfg.MODEL.BACKBONE.FEAT_DIM if feat_dim is None else feat_dim
            num_classes = h.NUM_CLASSES if num_classes is None else num_classes
            embedding_dim = h.EMBEDDING_DIM if embedding_dim is None else embedding_dim
            with_bnneck = h.WITH_BNNECK if with_bnneck is None else with_bnneck
            neck_feat = h.NECK_FEAT if neck_feat is None else neck_feat
            pool_layer = h.POOL_LAYER if pool_layer is None else pool_layer
            gem_p = h.GEM_P if gem_p is None else gem_p
            cls_layer = h.CLS_LAYER if cls_layer is None else cls_layer
            triplet_feat = h.TRIPLET_FEAT if triplet_feat is None else triplet_feat
            losses = list(cfg.MODEL.LOSSES.NAME)
            if CLS_LAYERS.get(cls_layer) == "cosine" and "CrossEntropyLoss" in losses:
                raise ValueError(
                    f"MODEL.HEADS.CLS_LAYER '{cls_layer}' makes cosine similarities "
                    "('cls_cosine'), not logits: replace CrossEntropyLoss in MODEL.LOSSES.NAME "
                    "by CircleSoftmaxLoss (its MODEL.LOSSES.CIRCLE_SOFTMAX keys hold the scale "
                    "and margin), or use CLS_LAYER 'linear'.")
        if feat_dim is None:
            raise ValueError("EmbeddingHead needs feat_dim (MODEL.BACKBONE.FEAT_DIM).")
        num_classes = int(num_classes or 0)
        embedding_dim = int(embedding_dim or 0)
        pool_layer = pool_layer or "avgpool"
        neck_feat = neck_feat or "before"
        triplet_feat = triplet_feat or "before"
        cls_layer = cls_layer or "linear"
        if neck_feat not in ("before", "after"):
            raise ValueError(f"MODEL.HEADS.NECK_FEAT must be 'before' or 'after', got '{neck_feat}'.")
        if triplet_feat not in ("before", "after"):
            raise ValueError(f"MODEL.HEADS.TRIPLET_FEAT must be 'before' or 'after', got "
                             f"'{triplet_feat}'.")
        if cls_layer not in CLS_LAYERS:
            raise ValueError(f"MODEL.HEADS.CLS_LAYER '{cls_layer}' is not supported by "
                             f"EmbeddingHead; use one of {sorted(CLS_LAYERS)}.")
        self.pool_layer = pool_layer
        self.pool = build_pooling(pool_layer, p=3.0 if gem_p is None else float(gem_p))
        self.with_bnneck = bool(with_bnneck)
        self.neck_after = neck_feat == "after"
        self.triplet_after = triplet_feat == "after"
        self.cosine = CLS_LAYERS[cls_layer] == "cosine"
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
            self.classifier = nn.Dense(dim, num_classes,
                                       has_bias=not (self.with_bnneck or self.cosine),
                                       weight_init=Normal(0.001), bias_init="zeros")

    def _neck_eval(self, feat):
        """The BN neck in eval mode written out, (x - mean) / sqrt(var + eps) * gamma + beta
        with the running statistics: what ``self.bnneck`` computes in eval mode, in a form
        MindSpore's ONNX exporter keeps (its BatchNorm1d output is lost as a graph output)."""
        if not self.with_bnneck:
            return feat
        bn = self.bnneck
        scale = bn.gamma / ops.sqrt(bn.moving_variance + bn.eps)
        return (feat - bn.moving_mean) * scale + bn.beta

    def construct(self, features):
        """features: (N, C, H, W) backbone map."""
        x = features
        if self.with_embedding:
            x = self.embedding(x)
        feat = self.pool(x)
        neck = feat
        if self.with_bnneck and self.training:
            neck = self.bnneck(feat)
        if not self.training:
            if self.neck_after:
                return {"global": self._neck_eval(feat)}
            return {"global": feat}
        metric_feat = neck if self.triplet_after else feat
        if self.cosine:
            weight = l2_normalize(self.classifier.weight, axis=1)
            cosine = ops.matmul(l2_normalize(neck, axis=1), weight.T)
            return {"cls_cosine": cosine, "global": metric_feat}
        logits = self.classifier(neck)
        return {"cls_logits": logits, "global": metric_feat}
