"""ResNet 18 / 34 / 50 / 101 backbones (feature map only, no classifier).

Parameter names follow the MindSpore model-zoo ResNet (``conv1.weight``, ``bn1.gamma``,
``layer1.0.conv1.weight``, ``layer1.0.down_sample_layer.0.weight``, ...), so a model-zoo
ImageNet checkpoint loads without renaming (see ``pretrained.py``).

The stem max pool is an explicit zero pad followed by a 'valid' 3x3/2 max pool: MindSpore
cannot export ``MaxPool2d(pad_mode='pad')`` to ONNX, and because the pool follows a ReLU
(every value >= 0) zero padding gives exactly the same result as the usual -inf padding.
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


def _conv(in_channels, out_channels, kernel_size, stride=1):
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad",
                     padding=kernel_size // 2, has_bias=False,
                     weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))


def _norm(channels, norm):
    if norm != "BN":
        raise ValueError(f"MODEL.BACKBONE.NORM '{norm}' is not supported by the ResNet backbone; "
                         "use 'BN'.")
    return nn.BatchNorm2d(channels, momentum=0.9, eps=1e-5)


class BasicBlock(nn.Cell):
    """Two 3x3 convolutions (ResNet-18/34): (N, C_in, H, W) -> (N, C, H/s, W/s)."""
    expansion = 1

    def __init__(self, in_channels, channels, stride=1, norm="BN"):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv(in_channels, channels, 3, stride)
        self.bn1 = _norm(channels, norm)
        self.conv2 = _conv(channels, out_channels, 3)
        self.bn2 = _norm(out_channels, norm)
        self.relu = nn.ReLU()
        self.down_sample = stride != 1 or in_channels != out_channels
        if self.down_sample:
            self.down_sample_layer = nn.SequentialCell(
                [_conv(in_channels, out_channels, 1, stride), _norm(out_channels, norm)])

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

    def __init__(self, in_channels, channels, stride=1, norm="BN"):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv(in_channels, channels, 1)
        self.bn1 = _norm(channels, norm)
        self.conv2 = _conv(channels, channels, 3, stride)
        self.bn2 = _norm(channels, norm)
        self.conv3 = _conv(channels, out_channels, 1)
        self.bn3 = _norm(out_channels, norm)
        self.relu = nn.ReLU()
        self.down_sample = stride != 1 or in_channels != out_channels
        if self.down_sample:
            self.down_sample_layer = nn.SequentialCell(
                [_conv(in_channels, out_channels, 1, stride), _norm(out_channels, norm)])

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
    """

    def __init__(self, depth=50, last_stride=2, norm="BN", base_width=64):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"MODEL.BACKBONE.DEPTH {depth} is not supported; use one of "
                             f"{sorted(RESNET_SPECS)}.")
        if last_stride not in (1, 2):
            raise ValueError(f"MODEL.BACKBONE.LAST_STRIDE must be 1 or 2, got {last_stride}.")
        if base_width <= 0:
            raise ValueError(f"MODEL.BACKBONE.BASE_WIDTH must be positive, got {base_width}.")
        kind, blocks = RESNET_SPECS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.depth = depth
        self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, pad_mode="pad", padding=3,
                               has_bias=False,
                               weight_init=HeNormal(mode="fan_out", nonlinearity="relu"))
        self.bn1 = _norm(base_width, norm)
        self.relu = nn.ReLU()
        self.pad = nn.Pad(paddings=((0, 0), (0, 0), (1, 1), (1, 1)), mode="CONSTANT")
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
        in_ch = base_width
        stages = []
        for i, (n, stride) in enumerate(zip(blocks, (1, 2, 2, last_stride))):
            width = base_width * (2 ** i)
            cells = []
            for b in range(n):
                cells.append(block(in_ch, width, stride if b == 0 else 1, norm))
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
    """ResNet from MODEL.BACKBONE.{DEPTH, LAST_STRIDE, NORM, BASE_WIDTH}; ImageNet weights
    from MODEL.BACKBONE.PRETRAIN_PATH when MODEL.BACKBONE.PRETRAIN is True."""
    bcfg = cfg.MODEL.BACKBONE
    model = ResNet(depth=int(bcfg.DEPTH), last_stride=int(bcfg.LAST_STRIDE), norm=bcfg.NORM,
                   base_width=int(bcfg.BASE_WIDTH))
    if bcfg.PRETRAIN:
        from .pretrained import load_imagenet_weights
        if not bcfg.PRETRAIN_PATH:
            raise ValueError(
                "MODEL.BACKBONE.PRETRAIN is True but MODEL.BACKBONE.PRETRAIN_PATH is empty: give "
                "the path of an ImageNet checkpoint (model-zoo .ckpt, or torchvision .npz / "
                ".safetensors), or set MODEL.BACKBONE.PRETRAIN False.")
        load_imagenet_weights(model, bcfg.PRETRAIN_PATH)
    return model
