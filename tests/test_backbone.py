"""ResNet backbones: shapes, strides, widths, the ONNX-safe stem, model-zoo names, config."""
import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms
from mindspore import nn

from fastreid_ms.config import get_cfg
from fastreid_ms.modeling import BACKBONE_REGISTRY, build_backbone
from fastreid_ms.modeling.backbones import ResNet


pytestmark = pytest.mark.usefixtures("pynative")


def num_params(cell):
    return sum(int(np.prod(p.shape)) for p in cell.get_parameters() if p.requires_grad)


@pytest.mark.parametrize("depth,channels", [(18, 64), (34, 64), (50, 256), (101, 256)])
def test_output_shapes_and_channels(depth, channels):
    net = ResNet(depth, last_stride=2, base_width=8)
    net.set_train(False)
    out = net(ms.Tensor(np.random.rand(2, 3, 64, 32).astype(np.float32)))
    assert net.out_channels == channels
    assert out.shape == (2, channels, 2, 1)


def test_last_stride_one_doubles_the_map():
    net = ResNet(18, last_stride=1, base_width=8)
    net.set_train(False)
    out = net(ms.Tensor(np.random.rand(1, 3, 64, 32).astype(np.float32)))
    assert out.shape == (1, 64, 4, 2)


@pytest.mark.parametrize("depth,expected", [(18, 11_176_512), (50, 23_508_032)])
def test_standard_parameter_counts(depth, expected):
    """Without the classifier: torchvision's resnet18 / resnet50 minus fc."""
    assert num_params(ResNet(depth)) == expected


def test_model_zoo_parameter_names():
    names = {n for n, _ in ResNet(50, base_width=8).parameters_and_names()}
    for name in ["conv1.weight", "bn1.gamma", "bn1.beta", "bn1.moving_mean", "bn1.moving_variance",
                 "layer1.0.conv1.weight", "layer1.0.bn3.gamma", "layer1.0.down_sample_layer.0.weight",
                 "layer1.0.down_sample_layer.1.moving_variance", "layer4.2.conv3.weight"]:
        assert name in names
    assert not any(n.startswith(("fc.", "end_point.")) for n in names)


def slow_max_pool_3x3_s2_pad1(x):
    """Reference stem pool with -inf padding (as torch / MaxPool2d pad 1)."""
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2, w + 2), -np.inf, dtype=np.float64)
    padded[:, :, 1:-1, 1:-1] = x
    oh, ow = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3))
    return out


@pytest.mark.parametrize("h,w", [(8, 6), (7, 5), (32, 16)])
def test_stem_pool_matches_padded_max_pool(h, w):
    """torchvision convention: zero pad + 'valid' pool equals the usual -inf padded pool on
    post-ReLU maps."""
    net = ResNet(18, base_width=8, convention="torchvision")
    x = np.maximum(np.random.default_rng(h).normal(size=(2, 3, h, w)), 0).astype(np.float32)
    out = net.maxpool(net.pad(ms.Tensor(x))).asnumpy()
    np.testing.assert_allclose(out, slow_max_pool_3x3_s2_pad1(x), rtol=0, atol=0)
    assert isinstance(net.maxpool, nn.MaxPool2d)


def test_built_from_config():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.DEPTH = 34
    cfg.MODEL.BACKBONE.LAST_STRIDE = 1
    cfg.MODEL.BACKBONE.BASE_WIDTH = 8
    assert "build_resnet_backbone" in BACKBONE_REGISTRY
    net = build_backbone(cfg)
    assert isinstance(net, ResNet) and net.depth == 34 and net.out_channels == 64
    net.set_train(False)
    assert net(ms.Tensor(np.zeros((1, 3, 64, 32), np.float32))).shape == (1, 64, 4, 2)


@pytest.mark.parametrize("kwargs,match", [({"depth": 42}, "DEPTH 42"),
                                          ({"last_stride": 3}, "LAST_STRIDE"),
                                          ({"norm": "GN"}, "NORM 'GN'"),
                                          ({"base_width": 0}, "BASE_WIDTH")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet(**kwargs)


def test_building_never_reads_imagenet_weights(tmp_path):
    """The trainer loads MODEL.BACKBONE.PRETRAIN_PATH; building (as --eval-only and export do)
    works without the file."""
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.DEPTH = 18
    cfg.MODEL.BACKBONE.BASE_WIDTH = 8
    cfg.MODEL.BACKBONE.PRETRAIN = True
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = str(tmp_path / "absent.ckpt")
    assert isinstance(build_backbone(cfg), ResNet)


@pytest.mark.parametrize("convention,eps", [("modelzoo", 1e-4), ("torchvision", 1e-5)])
def test_convention_sets_bn_eps_and_padding(convention, eps):
    net = ResNet(18, base_width=8, convention=convention)
    assert net.convention == convention
    bns = [c for _, c in net.cells_and_names() if isinstance(c, nn.BatchNorm2d)]
    assert bns and all(abs(c.eps - eps) < 1e-12 for c in bns)
    convs = [c for _, c in net.cells_and_names() if isinstance(c, nn.Conv2d)]
    assert {c.pad_mode for c in convs} == ({"same"} if convention == "modelzoo" else {"pad"})
    with pytest.raises(ValueError, match="CONVENTION 'caffe'"):
        ResNet(18, convention="caffe")
