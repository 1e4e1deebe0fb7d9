"""ResNet 18 / 34 / 50 / 101 backbones (feature map only, no classifier).

Parameter names follow the MindSpore model-zoo ResNet (``conv1.weight``, ``bn1.gamma``,
``layer1.0.conv1.weight``, ``layer1.0.down_sample_layer.0.weight``, ...), so a model-zoo
ImageNet checkpoint loads without renaming (see ``pretrained.py``).

Two numerical conventions (MODEL.BACKBONE.CONVENTION), one per family of ImageNet weights:

* ``"modelzoo"`` — the MindSpore model-zoo ResNet the seed's checkpoint was trained with:
  every convolution and the stem max pool use ``pad_mode='same'`` (output ceil(n / stride);
  the total padding, when odd, puts the extra pixel after: a 3x3 stride-2 layer on an even
  size pads 0 before and 1 after, the 7x7 stride-2 stem 2 before and 3 after), BN eps 1e-4.
* ``"torchvision"`` — symmetric padding ``k // 2`` and BN eps 1e-5. Its stem max pool is an
  explicit zero pad and a 'valid' 3x3/2 pool: MindSpore cannot export
  ``MaxPool2d(pad_mode='pad')`` to ONNX, and after a ReLU (every value >= 0) zero padding
  equals the usual -inf padding.

Two options of the strong baselines (fast-reid's BoT / AGW / SBS), both off by default:

* IBN-a (Pan et al., ECCV 2018; MODEL.BACKBONE.WITH_IBN): in the blocks of stages 1-3 the
  norm after the first convolution is :class:`IBN` — instance norm on the first half of the
  channels, batch norm on the rest (``bn1.IN.gamma``, ``bn1.BN.moving_mean``, ... as the
  IBN-Net ImageNet weights name them, so those load through ``pretrained.py``).
* Non-local blocks (Wang et al., CVPR 2018; MODEL.BACKBONE.WITH_NL, NL_LAYERS): k blocks after
  the last k residual blocks of a stage (AGW: [0, 2, 3, 0]), held in ``nl_layer2``, ... so the
  ResNet's own parameter names (and its ImageNet weights) are unchanged.
"""
import numpy as np
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore.common.initializer import HeNormal

from .build import BACKBONE_REGISTRY

# depth -> (block type, blocks per stage)
RESNET_SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


# convention -> BN epsilon
CONVENTIONS = {"modelzoo": 1e-4, "torchvision": 1e-5}


def _conv(in_channels, out_channels, kernel_size, stride=1, convention="modelzoo"):
    if convention == "modelzoo":
        padding = dict(pad_mode="same")
    else:
        padding = dict(pad_mode="pad", padding=kernel_size // 2)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, has_bias=False,
                     weight_init=HeNormal(mode="fan_out", nonlinearity="relu"), **padding)


def _norm(channels, norm, convention="modelzoo"):
    if norm != "BN":
        raise ValueError(f"MODEL.BACKBONE.NORM '{norm}' is not supported by the ResNet backbone; "
                         "use 'BN'.")
    return nn.BatchNorm2d(channels, momentum=0.9, eps=CONVENTIONS[convention])


class InstanceNorm2d(nn.Cell):
    """Instance norm with a per-channel affine (``gamma``, ``beta``): (N, C, H, W) -> same,
    each (sample, channel) normalised over its H x W positions (biased variance, ``eps``)."""

    def __init__(self, channels, eps=1e-5):
        super().__init__()
        self.gamma = ms.Parameter(ms.Tensor(np.ones(channels, np.float32)), name="gamma")
        self.beta = ms.Parameter(ms.Tensor(np.zeros(channels, np.float32)), name="beta")
        self.eps = float(eps)

    def construct(self, x):
        mean = ops.mean(x, axis=(2, 3), keep_dims=True)
        centred = x - mean
        var = ops.mean(centred * centred, axis=(2, 3), keep_dims=True)
        out = centred / ops.sqrt(var + self.eps)
        return out * self.gamma.reshape(1, -1, 1, 1) + self.beta.reshape(1, -1, 1, 1)


class IBN(nn.Cell):
    """IBN-a norm: (N, C, H, W) -> same; instance norm (affine) on channels [0, C // 2), batch
    norm on [C // 2, C), concatenated back in that order."""

    def __init__(self, channels, norm="BN", convention="modelzoo"):
        super().__init__()
        self.half = int(channels) // 2
        self.IN = InstanceNorm2d(self.half)
        self.BN = _norm(int(channels) - self.half, norm, convention)

    def construct(self, x):
        first = x[:, :self.half]
        rest = x[:, self.half:]
        return ops.concat((self.IN(first), self.BN(rest)), axis=1)


class NonLocalBlock(nn.Cell):
    """Embedded-dot-product non-local block: (N, C, H, W) -> same.

    theta, phi, g: 1x1 convolutions C -> C / reduction; f = theta^T phi / (H W) over the
    positions; y = f g; z = x + BN(W y) with W a 1x1 convolution back to C. The BN's gamma and
    beta start at 0, so a fresh block is the identity.
    """

    def __init__(self, channels, reduction=2, norm="BN", convention="modelzoo"):
        super().__init__()
        inter = max(int(channels) // int(reduction), 1)
        self.inter = inter

        def conv(cin, cout):
            return nn.Conv2d(cin, cout, 1, has_bias=True, pad_mode="valid",
                             weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))
        self.g = conv(channels, inter)
        self.theta = conv(channels, inter)
        self.phi = conv(channels, inter)
        self.W = nn.SequentialCell([conv(inter, channels), _norm(channels, norm, convention)])
        bn = self.W[1]
        bn.gamma.set_data(ms.Tensor(np.zeros(channels, np.float32)))
        bn.beta.set_data(ms.Tensor(np.zeros(channels, np.float32)))

    def construct(self, x):
        n, c, h, w = x.shape
        g_x = self.g(x).reshape(n, self.inter, -1).transpose(0, 2, 1)          # (N, HW, I)
        theta_x = self.theta(x).reshape(n, self.inter, -1).transpose(0, 2, 1)  # (N, HW, I)
        phi_x = self.phi(x).reshape(n, self.inter, -1)                          # (N, I, HW)
        f = ops.matmul(theta_x, phi_x) / float(h * w)                           # (N, HW, HW)
        y = ops.matmul(f, g_x).transpose(0, 2, 1).reshape(n, self.inter, h, w)
        return self.W(y) + x


class BasicBlock(nn.Cell):
    """Two 3x3 convolutions (ResNet-18/34): (N, C_in, H, W) -> (N, C, H/s, W/s)."""
    expansion = 1

    def __init__(self, in_channels, channels, stride=1, norm="BN", convention="modelzoo",
                 with_ibn=False):
        super().__init__()
        out_channels = channels * self.expansion
        c = convention
        self.conv1 = _conv(in_channels, channels, 3, stride, c)
        self.bn1 = IBN(channels, norm, c) if with_ibn else _norm(channels, norm, c)
        self.conv2 = _conv(channels, out_channels, 3, 1, c)
        self.bn2 = _norm(out_channels, norm, c)
        self.relu = nn.ReLU()
        self.down_sample = stride != 1 or in_channels != out_channels
        if self.down_sample:
            self.down_sample_layer = nn.SequentialCell(
                [_conv(in_channels, out_channels, 1, stride, c), _norm(out_channels, norm, c)])

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.down_sample:
            identity = self.down_sample_layer(x)
        return self.relu(out + identity)


class Bottleneck(nn.Cell):
    """1x1 -> 3x3 (stride here, "v1.5") -> 1x1 (ResNet-50/101): (N, C_in, H, W) -> (N, 4C, H/s, W/s)."""
    expansion = 4

    def __init__(self, in_channels, channels, stride=1, norm="BN", convention="modelzoo",
                 with_ibn=False):
        super().__init__()
        out_channels = channels * self.expansion
        c = convention
        self.conv1 = _conv(in_channels, channels, 1, 1, c)
        self.bn1 = IBN(channels, norm, c) if with_ibn else _norm(channels, norm, c)
        self.conv2 = _conv(channels, channels, 3, stride, c)
        self.bn2 = _norm(channels, norm, c)
        self.conv3 = _conv(channels, out_channels, 1, 1, c)
        self.bn3 = _norm(out_channels, norm, c)
        self.relu = nn.ReLU()
        self.down_sample = stride != 1 or in_channels != out_channels
        if self.down_sample:
            self.down_sample_layer = nn.SequentialCell(
                [_conv(in_channels, out_channels, 1, stride, c), _norm(out_channels, norm, c)])

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.down_sample:
            identity = self.down_sample_layer(x)
        return self.relu(out + identity)


class ResNet(nn.Cell):
    """ResNet feature extractor: images (N, 3, H, W) -> map (N, out_channels, H/32, W/32)
    (H/16, W/16 with ``last_stride=1``).

    Args:
        depth: 18, 34, 50 or 101.
        last_stride: stride of the last stage (2 as in the paper, 1 doubles the map).
        norm: normalisation layer ("BN").
        base_width: channels of the stem and the first stage (64 for the standard nets).
        convention: "modelzoo" ('same' padding, BN eps 1e-4) or "torchvision" (symmetric
            padding, BN eps 1e-5); see the module docstring.
        with_ibn: IBN-a norms in stages 1-3.
        nl_layers: non-local blocks per stage (4 counts, e.g. (0, 2, 3, 0)); None or all 0: none.
    """

    def __init__(self, depth=50, last_stride=2, norm="BN", base_width=64, convention="modelzoo",
                 with_ibn=False, nl_layers=None):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"MODEL.BACKBONE.DEPTH {depth} is not supported; use one of "
                             f"{sorted(RESNET_SPECS)}.")
        if last_stride not in (1, 2):
            raise ValueError(f"MODEL.BACKBONE.LAST_STRIDE must be 1 or 2, got {last_stride}.")
        if base_width <= 0:
            raise ValueError(f"MODEL.BACKBONE.BASE_WIDTH must be positive, got {base_width}.")
        if convention not in CONVENTIONS:
            raise ValueError(f"MODEL.BACKBONE.CONVENTION '{convention}' is not known; use one of "
                             f"{sorted(CONVENTIONS)}.")
        kind, blocks = RESNET_SPECS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.depth = depth
        self.convention = convention
        self.conv1 = _conv(3, base_width, 7, 2, convention)
        self.bn1 = _norm(base_width, norm, convention)
        self.relu = nn.ReLU()
        if convention == "modelzoo":
            self.pad = nn.Identity()
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")
        else:
            self.pad = nn.Pad(paddings=((0, 0), (0, 0), (1, 1), (1, 1)), mode="CONSTANT")
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
        nl_layers = tuple(int(k) for k in (nl_layers or (0, 0, 0, 0)))
        if len(nl_layers) != 4 or any(k < 0 for k in nl_layers):
            raise ValueError(f"MODEL.BACKBONE.NL_LAYERS must be 4 counts >= 0 (one per stage), "
                             f"got {list(nl_layers)}.")
        for i, (k, n) in enumerate(zip(nl_layers, blocks)):
            if k > n:
                raise ValueError(
                    f"MODEL.BACKBONE.NL_LAYERS {list(nl_layers)} asks for {k} non-local blocks in "
                    f"stage {i + 1}, which has only {n} residual blocks at DEPTH {depth}; use at "
                    f"most {list(blocks)}.")
        self.with_ibn = bool(with_ibn)
        self.with_nl = any(nl_layers)
        in_ch = base_width
        stages = []
        stage_channels = []
        for i, (n, stride) in enumerate(zip(blocks, (1, 2, 2, last_stride))):
            width = base_width * (2 ** i)
            cells = []
            ibn = self.with_ibn and i < 3  # IBN-a: stages 1-3, not the last one
            for b in range(n):
                cells.append(block(in_ch, width, stride if b == 0 else 1, norm, convention,
                                   with_ibn=ibn))
                in_ch = width * block.expansion
            stages.append(nn.SequentialCell(cells))
            stage_channels.append(in_ch)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # Non-local blocks after the last k residual blocks of each stage: block index -> NL index.
        self.nl_after = tuple(tuple(range(n - k, n)) for k, n in zip(nl_layers, blocks))
        nl_cells = [nn.CellList([NonLocalBlock(ch, 2, norm, convention) for _ in range(k)])
                    for k, ch in zip(nl_layers, stage_channels)]
        self.nl_layer1, self.nl_layer2, self.nl_layer3, self.nl_layer4 = nl_cells
        self.out_channels = in_ch

    def _stage(self, stage, nls, nl_after, x):
        """Run one stage, each listed block followed by its non-local block."""
        j = 0
        for i in range(len(stage)):
            x = stage[i](x)
            if i in nl_after:
                x = nls[j](x)
                j += 1
        return x

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.pad(x))
        if not self.with_nl:
            x = self.layer1(x)
            x = self.layer2(x)
            x = self.layer3(x)
            return self.layer4(x)
        x = self._stage(self.layer1, self.nl_layer1, self.nl_after[0], x)
        x = self._stage(self.layer2, self.nl_layer2, self.nl_after[1], x)
        x = self._stage(self.layer3, self.nl_layer3, self.nl_after[2], x)
        return self._stage(self.layer4, self.nl_layer4, self.nl_after[3], x)


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg):
    """ResNet from MODEL.BACKBONE.{DEPTH, LAST_STRIDE, NORM, BASE_WIDTH, CONVENTION, WITH_IBN,
    WITH_NL, NL_LAYERS}, with
    initial weights (the trainer loads the ImageNet weights of MODEL.BACKBONE.PRETRAIN_PATH
    when training starts, see ``pretrained.load_pretrained_backbone``)."""
    bcfg = cfg.MODEL.BACKBONE
    return ResNet(depth=int(bcfg.DEPTH), last_stride=int(bcfg.LAST_STRIDE), norm=bcfg.NORM,
                  base_width=int(bcfg.BASE_WIDTH), convention=str(bcfg.CONVENTION),
                  with_ibn=bool(bcfg.WITH_IBN),
                  nl_layers=list(bcfg.NL_LAYERS) if bcfg.WITH_NL else None)
