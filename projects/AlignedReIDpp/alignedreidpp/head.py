"""AlignedReID++ head: global feature + classifier, and horizontal part (local) features."""
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import HeNormal, Normal

from fastreid_ms.modeling.heads import HEAD_REGISTRY
from fastreid_ms.modeling.layers import L2Norm

LOCAL_TEST_FEATS = ("backbone", "branch")
# MODEL.HEADS.LOCAL_CONV_INIT -> initializer of the local 1x1 conv weight
LOCAL_CONV_INITS = {"normal": lambda: Normal(0.01),
                    "kaiming": lambda: HeNormal(mode="fan_out", nonlinearity="relu")}


@HEAD_REGISTRY.register()
class AlignedReIDppHead(nn.Cell):
    """Backbone map (N, C, P, W) -> global and local features (C = MODEL.BACKBONE.FEAT_DIM,
    P = map height = number of parts; 8 for 256x128 inputs with last stride 2).

    Global: average pool -> (N, C), classified by a linear layer (with bias, as the seed;
    weight N(0, CLS_INIT_STD)). Local branch: BN -> ReLU -> max over the width -> 1x1 conv to
    LOCAL_DIM (weight as LOCAL_CONV_INIT) -> L2 per part.

    Training returns ``{"cls_logits": (N, K), "global": (N, C), "local": (N, P, LOCAL_DIM)}``.
    Eval returns ``{"global": (N, C), "local": ...}`` where "local" follows
    MODEL.HEADS.LOCAL_TEST_FEAT: "backbone" (the paper's code) = the map max-pooled over the
    width and L2-normalised per part, (N, P, C); "branch" = the training branch, (N, P, LOCAL_DIM).
    """

    def __init__(self, cfg=None, *, feat_dim=None, num_classes=None, local_dim=None,
                 local_test_feat=None, cls_init_std=None, local_conv_init=None):
        super().__init__()
        if cfg is not None:
            h = cfg.MODEL.HEADS
            feat_dim = cfg.MODEL.BACKBONE.FEAT_DIM if feat_dim is None else feat_dim
            num_classes = h.NUM_CLASSES if num_classes is None else num_classes
            local_dim = h.LOCAL_DIM if local_dim is None else local_dim
            local_test_feat = h.LOCAL_TEST_FEAT if local_test_feat is None else local_test_feat
            cls_init_std = h.CLS_INIT_STD if cls_init_std is None else cls_init_std
            local_conv_init = h.LOCAL_CONV_INIT if local_conv_init is None else local_conv_init
        cls_init_std = 0.01 if cls_init_std is None else float(cls_init_std)
        local_conv_init = local_conv_init or "normal"
        if local_conv_init not in LOCAL_CONV_INITS:
            raise ValueError(f"MODEL.HEADS.LOCAL_CONV_INIT must be one of "
                             f"{sorted(LOCAL_CONV_INITS)}, got '{local_conv_init}'.")
        if cls_init_std <= 0:
            raise ValueError(f"MODEL.HEADS.CLS_INIT_STD must be positive, got {cls_init_std}.")
        if feat_dim is None:
            raise ValueError("AlignedReIDppHead needs feat_dim (MODEL.BACKBONE.FEAT_DIM).")
        local_dim = int(128 if local_dim is None else local_dim)
        local_test_feat = local_test_feat or "backbone"
        if local_test_feat not in LOCAL_TEST_FEATS:
            raise ValueError(f"MODEL.HEADS.LOCAL_TEST_FEAT must be one of {list(LOCAL_TEST_FEATS)}, "
                             f"got '{local_test_feat}'.")
        if local_dim <= 0:
            raise ValueError(f"MODEL.HEADS.LOCAL_DIM must be positive, got {local_dim}.")
        feat_dim = int(feat_dim)
        self.num_classes = int(num_classes or 0)
        self.test_from_backbone = local_test_feat == "backbone"
        self.out_dim = feat_dim
        self.local_dim = local_dim
        self.local_bn = nn.BatchNorm2d(feat_dim, momentum=0.9, eps=1e-5)
        self.relu = nn.ReLU()
        self.part_norm = L2Norm(axis=2)  # float32 under mixed precision
        self.local_conv = nn.Conv2d(feat_dim, local_dim, 1, has_bias=True,
                                    weight_init=LOCAL_CONV_INITS[local_conv_init](),
                                    bias_init="zeros")
        if self.num_classes > 0:
            self.classifier = nn.Dense(feat_dim, self.num_classes, has_bias=True,
                                       weight_init=Normal(cls_init_std), bias_init="zeros")

    def local_branch(self, x):
        """(N, C, P, W) -> (N, P, LOCAL_DIM), L2-normalised per part."""
        y = self.relu(self.local_bn(x))
        y = ops.amax(y, axis=3, keepdims=True)                # (N, C, P, 1)
        y = self.local_conv(y).squeeze(3)                      # (N, LOCAL_DIM, P)
        return self.part_norm(y.transpose(0, 2, 1))

    def construct(self, features):
        """features: (N, C, P, W) backbone map."""
        global_feat = ops.mean(features, axis=(2, 3))
        if not self.training:
            if self.test_from_backbone:
                local = ops.amax(features, axis=3).transpose(0, 2, 1)   # (N, P, C)
                local = self.part_norm(local)
            else:
                local = self.local_branch(features)
            return {"global": global_feat, "local": local}
        logits = self.classifier(global_feat)
        return {"cls_logits": logits, "global": global_feat, "local": self.local_branch(features)}
