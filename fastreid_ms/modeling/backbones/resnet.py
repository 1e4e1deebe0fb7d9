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
"""
import mindspore.nn as nn
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


class BasicBlock(nn.Cell):
    """Two 3x3 convolutions (ResNet-18/34): (N, C_in, H, W) -> (N, C, H/s, W/s)."""
    expansion = 1

    def __init__(self, in_channels, channels, stride=1, norm="BN", convention="modelzoo"):
        super().__init__()
        out_channels = channels * self.expansion
        c = convention
        self.conv1 = _conv(in_channels, channels, 3, stride, c)
        self.bn1 = _norm(channels, norm, c)
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

    def __init__(self, in_channels, channels, stride=1, norm="BN", convention="modelzoo"):
        super().__init__()
        out_channels = channels * self.expansion
        c = convention
        self.conv1 = _conv(in_channels, channels, 1, 1, c)
        self.bn1 = _norm(channels, norm, c)
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
    """

    def __init__(self, depth=50, last_stride=2, norm="BN", base_width=64, convention="modelzoo"):
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
        in_ch = base_width
        stages = []
        for i, (n, stride) in enumerate(zip(blocks, (1, 2, 2, last_stride))):
            width = base_width * (2 ** i)
            cells = []
            for b in range(n):
                cells.append(block(in_ch, width, stride if b == 0 else 1, norm, convention))
                in_ch = width * block.expansion
            stages.append(nn.SequentialCell(cells))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = in_ch

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.pad(x))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg):
    """ResNet from MODEL.BACKBONE.{DEPTH, LAST_STRIDE, NORM, BASE_WIDTH, CONVENTION}, with
    initial weights (the trainer loads the ImageNet weights of MODEL.BACKBONE.PRETRAIN_PATH
    when training starts, see ``pretrained.load_pretrained_backbone``)."""
    bcfg = cfg.MODEL.BACKBONE
    return ResNet(depth=int(bcfg.DEPTH), last_stride=int(bcfg.LAST_STRIDE), norm=bcfg.NORM,
                  base_width=int(bcfg.BASE_WIDTH), convention=str(bcfg.CONVENTION))
