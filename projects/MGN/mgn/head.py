"""MGNHead: the multi-branch head of MGN (Wang et al., "Learning Discriminative Features with
Multiple Granularities for Person Re-Identification", ACM MM 2018).

The input is the map of the shared trunk (a ResNet up to layer3's first block, see
``meta_arch.ResNetTrunk``). Each branch runs its own copy of the rest of layer3 and of
layer4; the global branch's layer4 keeps the backbone's last stride (2 in the paper), the
part branches' use stride 1 (a map twice as tall). Pooled features, in this order:

    [global of branch 0, global of branch 1, ..., stripes of branch 1 (top first), stripes of
     branch 2, ...]

i.e. with PART_STRIPES [2, 3]: g0, g1, g2, p1_1, p1_2, p2_1, p2_2, p2_3 (fast-reid's order of
the test feature). Each is max-pooled (POOL), reduced by its own 1x1 conv + BN (+ ReLU) to
REDUCTION_DIM and read by its own bias-free classifier.
"""
from typing import List, Sequence, Tuple

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import HeNormal, Normal

from fastreid_ms.modeling.backbones import build_backbone
from fastreid_ms.modeling.backbones.resnet import IBN
from fastreid_ms.modeling.heads.build import HEAD_REGISTRY

POOLS = ("max", "avg")


def stripe_rows(height: int, num_stripes: int) -> List[Tuple[int, int]]:
    """[(start, end)] rows of each horizontal stripe: adaptive pooling's bins (equal stripes
    when ``height`` is a multiple of ``num_stripes``, overlapping by a row otherwise)."""
    return [((i * height) // num_stripes, -((-(i + 1) * height) // num_stripes))
            for i in range(num_stripes)]


def pool_rows(x, start: int, end: int, pool: str):
    """(N, C, H, W) -> (N, C, 1, 1): max (or mean) over rows start..end-1 and every column."""
    rows = x[:, :, start:end, :]
    if pool == "max":
        return ops.amax(rows, axis=(2, 3), keepdims=True)
    return ops.mean(rows, axis=(2, 3), keep_dims=True)


def block_stride(block) -> int:
    """Spatial stride of a ResNet block (that of its shortcut convolution; 1 without one)."""
    if getattr(block, "down_sample", False):
        stride = block.down_sample_layer[0].stride
        return int(stride[-1] if isinstance(stride, (tuple, list)) else stride)
    return 1


def clone_block(block, stride: int, norm: str = "BN", convention: str = "modelzoo"):
    """A new block of ``block``'s class and widths with the given ``stride``, holding a copy of
    every parameter of ``block`` (the stride changes no parameter shape)."""
    in_channels = int(block.conv1.in_channels)
    channels = int(block.conv1.out_channels)
    with_ibn = isinstance(block.bn1, IBN)        # IBN-a blocks (MODEL.BACKBONE.WITH_IBN) stay so
    clone = type(block)(in_channels, channels, stride, norm, convention, with_ibn=with_ibn)
    if clone.down_sample != block.down_sample:
        raise ValueError(f"Cannot copy a {type(block).__name__} ({in_channels} -> "
                         f"{channels * block.expansion} channels) with stride {stride}: the copy "
                         "would need a shortcut convolution the original lacks.")
    source = dict(block.parameters_and_names())
    for name, param in clone.parameters_and_names():
        value = source[name]
        param.set_data(ms.Tensor(value.asnumpy(), value.dtype))
    return clone


class MGNBranch(nn.Cell):
    """One branch: copies of a ResNet's layer3[1:] and layer4 (stride ``last_stride``).

    (N, C3, H, W) -> (N, C4, H / s, W / s). ``resnet_names`` maps each parameter of the branch
    (``layer3.0.conv1.weight``) to the ResNet's own name (``layer3.1.conv1.weight``)."""

    def __init__(self, resnet, last_stride: int, norm: str = "BN"):
        super().__init__()
        convention = getattr(resnet, "convention", "modelzoo")
        rest = list(resnet.layer3)[1:]
        if not rest:
            raise ValueError("MGN needs a ResNet whose layer3 has at least two blocks.")
        self.layer3 = nn.SequentialCell([clone_block(b, block_stride(b), norm, convention)
                                         for b in rest])
        blocks = list(resnet.layer4)
        self.layer4 = nn.SequentialCell(
            [clone_block(b, last_stride if i == 0 else block_stride(b), norm, convention)
             for i, b in enumerate(blocks)])
        self.out_channels = int(blocks[-1].conv1.out_channels) * blocks[-1].expansion

    def resnet_names(self):
        """[(ResNet parameter name, our parameter)] for every parameter of the branch."""
        out = []
        for name, param in self.parameters_and_names():
            stage, index, rest = name.split(".", 2)
            if stage == "layer3":
                index = str(int(index) + 1)
            out.append((f"{stage}.{index}.{rest}", param))
        return out

    def construct(self, x):
        return self.layer4(self.layer3(x))


def _reduction(in_channels: int, dim: int, relu: bool):
    cells = [nn.Conv2d(in_channels, dim, 1, has_bias=False,
                       weight_init=HeNormal(mode="fan_out", nonlinearity="relu")),
             nn.BatchNorm2d(dim, momentum=0.9, eps=1e-5)]
    if relu:
        cells.append(nn.ReLU())
    return nn.SequentialCell(cells)


@HEAD_REGISTRY.register()
class MGNHead(nn.Cell):
    """Trunk map (N, C3, H, W) -> MGN's features.

    Training returns ``{"mgn_logits": (N, F, K), "mgn_feats": (N, F, D), "global": (N, F * D)}``
    with F = (1 + number of part branches) + sum(PART_STRIPES) reduced features (8 for the
    paper's [2, 3]) of D = REDUCTION_DIM channels, K classes; eval returns
    ``{"global": (N, F * D)}``, the concatenation (2048-d for the paper's sizes).

    Built from the config (``MGNHead(cfg)``, MODEL.HEADS.MGN.*; the branches are copied from
    the ResNet that MODEL.BACKBONE describes, or from ``resnet`` when given, as the MGN
    meta-architecture does) or with plain keywords; an explicit keyword wins over the config.
    """

    def __init__(self, cfg=None, *, resnet=None, num_classes=None, part_stripes=None,
                 global_last_stride=None, part_last_stride=None, pool=None, reduction_dim=None,
                 reduction_relu=None, cls_init_std=None, norm=None):
        super().__init__()
        if cfg is not None:
            h = cfg.MODEL.HEADS
            if "MGN" not in h:
                raise KeyError("MGNHead needs MODEL.HEADS.MGN: import the plugin "
                               "(PLUGINS: [\"projects.MGN.mgn\"]) before building the model.")
            m = h.MGN
            resnet = build_backbone(cfg) if resnet is None else resnet
            num_classes = h.NUM_CLASSES if num_classes is None else num_classes
            part_stripes = m.PART_STRIPES if part_stripes is None else part_stripes
            global_last_stride = (cfg.MODEL.BACKBONE.LAST_STRIDE if global_last_stride is None
                                  else global_last_stride)
            part_last_stride = m.PART_LAST_STRIDE if part_last_stride is None else part_last_stride
            pool = m.POOL if pool is None else pool
            reduction_dim = m.REDUCTION_DIM if reduction_dim is None else reduction_dim
            reduction_relu = m.REDUCTION_RELU if reduction_relu is None else reduction_relu
            cls_init_std = m.CLS_INIT_STD if cls_init_std is None else cls_init_std
            norm = cfg.MODEL.BACKBONE.NORM if norm is None else norm
        if resnet is None or not all(hasattr(resnet, k) for k in ("layer3", "layer4")):
            raise ValueError("MGNHead copies its branches from a ResNet backbone (layer3, layer4): "
                             "give resnet= or a config whose MODEL.BACKBONE builds a ResNet.")
        part_stripes = tuple(int(p) for p in (part_stripes if part_stripes is not None else (2, 3)))
        if any(p < 1 for p in part_stripes):
            raise ValueError(f"MODEL.HEADS.MGN.PART_STRIPES must be positive integers, got "
                             f"{list(part_stripes)}.")
        pool = pool or "max"
        if pool not in POOLS:
            raise ValueError(f"MODEL.HEADS.MGN.POOL must be one of {list(POOLS)}, got '{pool}'.")
        reduction_dim = int(256 if reduction_dim is None else reduction_dim)
        if reduction_dim < 1:
            raise ValueError(f"MODEL.HEADS.MGN.REDUCTION_DIM must be >= 1, got {reduction_dim}.")
        strides = (int(2 if global_last_stride is None else global_last_stride),
                   int(1 if part_last_stride is None else part_last_stride))
        for key, value in zip(("MODEL.BACKBONE.LAST_STRIDE", "MODEL.HEADS.MGN.PART_LAST_STRIDE"),
                              strides):
            if value not in (1, 2):
                raise ValueError(f"{key} must be 1 or 2, got {value}.")
        norm = norm or "BN"

        self.pool = pool
        self.part_stripes = part_stripes
        self.num_branches = 1 + len(part_stripes)
        self.num_features = self.num_branches + sum(part_stripes)
        self.reduction_dim = reduction_dim
        self.out_dim = self.num_features * reduction_dim
        self.num_classes = int(num_classes or 0)
        self.branches = nn.CellList(
            [MGNBranch(resnet, strides[0] if b == 0 else strides[1], norm)
             for b in range(self.num_branches)])
        channels = self.branches[0].out_channels
        relu = True if reduction_relu is None else bool(reduction_relu)
        self.reductions = nn.CellList([_reduction(channels, reduction_dim, relu)
                                       for _ in range(self.num_features)])
        if self.num_classes > 0:
            std = float(0.01 if cls_init_std is None else cls_init_std)
            self.classifiers = nn.CellList([
                nn.Dense(reduction_dim, self.num_classes, has_bias=False, weight_init=Normal(std))
                for _ in range(self.num_features)])

    def resnet_names(self):
        """[(ResNet parameter name, our parameter)] for every parameter of every branch: each
        ResNet name appears once per branch (the ImageNet weights go into every copy)."""
        out = []
        for branch in self.branches:
            out.extend(branch.resnet_names())
        return out

    def pooled_features(self, features):
        """List of F pooled (N, C4, 1, 1) features in the order of the module docstring."""
        maps = []
        for branch in self.branches:
            maps.append(branch(features))
        pooled = []
        for b in range(self.num_branches):
            pooled.append(pool_rows(maps[b], 0, maps[b].shape[2], self.pool))
        for b in range(1, self.num_branches):
            height = maps[b].shape[2]
            for start, end in stripe_rows(height, self.part_stripes[b - 1]):
                pooled.append(pool_rows(maps[b], start, end, self.pool))
        return pooled

    def construct(self, features):
        """features: (N, C3, H, W) trunk map; each part branch's map needs as many rows as its
        stripes."""
        pooled = self.pooled_features(features)
        reduced = []
        for i in range(self.num_features):
            r = self.reductions[i](pooled[i])
            reduced.append(ops.reshape(r, (-1, self.reduction_dim)))
        # Concatenations, not ops.stack: an exported MINDIR with a dynamic batch keeps the
        # batch size of its first call in a Stack's output (MindSpore 2.10, measured).
        global_feat = ops.concat(reduced, axis=1)                  # (N, F * D)
        if not self.training:
            return {"global": global_feat}
        feats = ops.concat([ops.expand_dims(r, 1) for r in reduced], axis=1)   # (N, F, D)
        if self.num_classes == 0:
            raise ValueError("MGNHead was built without classifiers (MODEL.HEADS.NUM_CLASSES 0): "
                             "set it to the number of training identities to train.")
        logits = []
        for i in range(self.num_features):
            logits.append(self.classifiers[i](reduced[i]))
        logits = ops.concat([ops.expand_dims(l, 1) for l in logits], axis=1)  # (N, F, K)
        return {"mgn_logits": logits, "mgn_feats": feats,
                "global": global_feat}
