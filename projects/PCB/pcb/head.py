"""PCBHead: part-based convolutional baseline (Sun et al., "Beyond Part Models", ECCV 2018).

backbone map (N, C, H, W) -> NUM_STRIPES horizontal stripes, each average-pooled to a
column vector g_i (C) -> shared 1x1 conv + BN + ReLU -> h_i (D) -> one classifier per stripe.
"""
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import HeNormal, Normal

from fastreid_ms.modeling.heads.build import HEAD_REGISTRY

TEST_FEATS = ("pooled", "reduced")


def stripe_bounds(height: int, num_stripes: int):
    """[(start, end)] rows of each stripe: adaptive pooling's bins (equal stripes when
    ``height`` is a multiple of ``num_stripes``, overlapping by a row otherwise)."""
    return [((i * height) // num_stripes, -((-(i + 1) * height) // num_stripes))
            for i in range(num_stripes)]


def stripe_pool(x, num_stripes: int):
    """(N, C, H, W) -> (N, C, num_stripes, 1): the mean of each horizontal stripe."""
    parts = []
    for start, end in stripe_bounds(x.shape[2], num_stripes):
        parts.append(ops.mean(x[:, :, start:end, :], axis=(2, 3), keep_dims=True))
    return ops.cat(parts, axis=2)


def _flatten_stripes(x):
    """(N, C, P, 1) -> (N, P * C), stripe by stripe (top stripe first)."""
    x = ops.transpose(ops.squeeze(x, 3), (0, 2, 1))
    return ops.reshape(x, (x.shape[0], -1))


@HEAD_REGISTRY.register()
class PCBHead(nn.Cell):
    """Training returns ``{"stripe_logits": (N, P, num_classes), "global": (N, P * D)}``
    ("global" is the concatenated h, for an optional triplet loss); eval returns
    ``{"global": (N, P * C)}`` (concatenated g, STRIPE_TEST_FEAT "pooled") or
    ``{"global": (N, P * D)}`` ("reduced").

    Built from the config (``PCBHead(cfg)``) or with plain arguments; a keyword given
    explicitly wins over the config.
    """

    def __init__(self, cfg=None, *, feat_dim=None, num_classes=None, num_stripes=None,
                 stripe_dim=None, test_feat=None):
        super().__init__()
        if cfg is not None:
            h = cfg.MODEL.HEADS
            feat_dim = cfg.MODEL.BACKBONE.FEAT_DIM if feat_dim is None else feat_dim
            num_classes = h.NUM_CLASSES if num_classes is None else num_classes
            if "NUM_STRIPES" not in h:
                raise KeyError("PCBHead needs MODEL.HEADS.NUM_STRIPES: import the plugin "
                               "(PLUGINS: [\"projects.PCB.pcb\"]) before building the model.")
            num_stripes = h.NUM_STRIPES if num_stripes is None else num_stripes
            stripe_dim = h.STRIPE_DIM if stripe_dim is None else stripe_dim
            test_feat = h.STRIPE_TEST_FEAT if test_feat is None else test_feat
        if feat_dim is None:
            raise ValueError("PCBHead needs feat_dim (MODEL.BACKBONE.FEAT_DIM).")
        num_stripes = int(6 if num_stripes is None else num_stripes)
        stripe_dim = int(256 if stripe_dim is None else stripe_dim)
        test_feat = test_feat or "pooled"
        if num_stripes < 1:
            raise ValueError(f"MODEL.HEADS.NUM_STRIPES must be >= 1, got {num_stripes}.")
        if stripe_dim < 1:
            raise ValueError(f"MODEL.HEADS.STRIPE_DIM must be >= 1, got {stripe_dim}.")
        if test_feat not in TEST_FEATS:
            raise ValueError(f"MODEL.HEADS.STRIPE_TEST_FEAT must be one of {list(TEST_FEATS)}, "
                             f"got '{test_feat}'.")
        self.num_stripes = num_stripes
        self.num_classes = int(num_classes or 0)
        self.test_pooled = test_feat == "pooled"
        self.out_dim = num_stripes * (int(feat_dim) if self.test_pooled else stripe_dim)
        self.reduce = nn.Conv2d(int(feat_dim), stripe_dim, 1, has_bias=False,
                                weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))
        self.bn = nn.BatchNorm2d(stripe_dim, momentum=0.9, eps=1e-5)
        self.relu = nn.ReLU()
        if self.num_classes > 0:
            self.classifiers = nn.CellList([
                nn.Dense(stripe_dim, self.num_classes, weight_init=Normal(0.001), bias_init="zeros")
                for _ in range(num_stripes)])

    def construct(self, features):
        """features: (N, C, H, W) backbone map with H >= NUM_STRIPES."""
        pooled = stripe_pool(features, self.num_stripes)      # (N, C, P, 1)
        if not self.training and self.test_pooled:
            return {"global": _flatten_stripes(pooled)}
        reduced = self.relu(self.bn(self.reduce(pooled)))     # (N, D, P, 1)
        if not self.training:
            return {"global": _flatten_stripes(reduced)}
        if self.num_classes == 0:
            raise ValueError("PCBHead was built without classifiers (MODEL.HEADS.NUM_CLASSES 0): "
                             "set it to the number of training identities to train.")
        logits = []
        for i in range(self.num_stripes):
            logits.append(self.classifiers[i](reduced[:, :, i, 0]))
        return {"stripe_logits": ops.stack(logits, axis=1), "global": _flatten_stripes(reduced)}
