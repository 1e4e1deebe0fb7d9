"""The seed's backbone numerics: a ResNet-50 built with MODEL.BACKBONE.CONVENTION modelzoo and
loaded from a checkpoint in the model zoo's format (written here with random weights, named
and shaped as the seed's resnet50_ascend_v130_imagenet2012 file, optimizer state included)
equals, in eval mode, a NumPy forward of the model-zoo ResNet-50 written here from the seed's
src/ResNet.py: pad_mode 'same' convolutions and max pool, BN eps 1e-4, stride in the 3x3."""
import logging
import math

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms

from fastreid_ms.config import get_cfg
from fastreid_ms.modeling import build_model
from fastreid_ms.modeling.backbones import ResNet
from fastreid_ms.modeling.backbones.pretrained import (PretrainedWeightsMissing,
                                                       check_pretrained_weights,
                                                       load_imagenet_weights,
                                                       load_pretrained_backbone)

pytestmark = pytest.mark.usefixtures("pynative")

# The model zoo's ResNet50: ResNet(ResidualBlock, [3, 4, 6, 3], [64, 256, 512, 1024],
# [256, 512, 1024, 2048], strides [1, 2, 2, 2]).
LAYERS = (3, 4, 6, 3)
IN_CHANNELS = (64, 256, 512, 1024)
OUT_CHANNELS = (256, 512, 1024, 2048)
STRIDES = (1, 2, 2, 2)
EPS = 1e-4


def zoo_checkpoint_arrays(seed=0):
    """{name: array} of a model-zoo ResNet-50 ImageNet checkpoint with random values: He-scaled
    convolutions, BN statistics that are not the identity, the 1000-way end_point, and the
    optimizer entries the real file holds."""
    rng = np.random.default_rng(seed)
    arrays = {}

    def conv(name, cout, cin, k):
        arrays[name] = (rng.standard_normal((cout, cin, k, k)) *
                        math.sqrt(2.0 / (cin * k * k))).astype(np.float32)

    def bn(name, c):
        arrays[name + ".gamma"] = rng.uniform(0.6, 1.0, c).astype(np.float32)
        arrays[name + ".beta"] = rng.normal(0, 0.1, c).astype(np.float32)
        arrays[name + ".moving_mean"] = rng.normal(0, 0.2, c).astype(np.float32)
        arrays[name + ".moving_variance"] = rng.uniform(0.8, 1.6, c).astype(np.float32)

    conv("conv1.weight", 64, 3, 7)
    bn("bn1", 64)
    for li, (n, cin, cout, stride) in enumerate(zip(LAYERS, IN_CHANNELS, OUT_CHANNELS, STRIDES)):
        mid = cout // 4
        for b in range(n):
            p = f"layer{li + 1}.{b}"
            block_in = cin if b == 0 else cout
            conv(f"{p}.conv1.weight", mid, block_in, 1)
            bn(f"{p}.bn1", mid)
            conv(f"{p}.conv2.weight", mid, mid, 3)
            bn(f"{p}.bn2", mid)
            conv(f"{p}.conv3.weight", cout, mid, 1)
            bn(f"{p}.bn3", cout)
            if b == 0:
                conv(f"{p}.down_sample_layer.0.weight", cout, block_in, 1)
                bn(f"{p}.down_sample_layer.1", cout)
    arrays["end_point.weight"] = rng.normal(0, 0.01, (1000, 2048)).astype(np.float32)
    arrays["end_point.bias"] = np.zeros(1000, np.float32)
    arrays["moments.conv1.weight"] = np.zeros((64, 3, 7, 7), np.float32)
    arrays["learning_rate"] = np.array(0.1, np.float32)
    arrays["global_step"] = np.array([500000], np.int32)
    return arrays


def write_zoo_checkpoint(path, arrays):
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in arrays.items()], str(path))
    return str(path)


# ---------------------------------------------------------------- NumPy model-zoo forward
def same_padding(size, kernel, stride):
    """(before, after) of pad_mode 'same': output ceil(size / stride), odd total after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x, kernel, stride, value):
    (t, b), (l, r) = same_padding(x.shape[2], kernel, stride), same_padding(x.shape[3], kernel, stride)
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def conv_same(x, w, stride):
    k = w.shape[2]
    xp = pad_same(x, k, stride, 0.0)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True)


def maxpool_same(x, k=3, stride=2):
    xp = pad_same(x, k, stride, -np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return win.max(axis=(4, 5))


def bn_eval(x, a, name):
    g, b = a[name + ".gamma"], a[name + ".beta"]
    m, v = a[name + ".moving_mean"], a[name + ".moving_variance"]
    scale = g / np.sqrt(v.astype(np.float64) + EPS)
    return x * scale[None, :, None, None] + (b - m * scale)[None, :, None, None]


def zoo_resnet50_forward(x, a):
    """The seed's ResNet.construct (use_se False) in float64: conv1 7x7/2 -> bn -> relu ->
    max pool 3x3/2 'same' -> 4 stages of ResidualBlock -> the (N, 2048, h, w) map."""
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    x = relu(bn_eval(conv_same(x.astype(np.float64), a["conv1.weight"], 2), a, "bn1"))
    x = maxpool_same(x)
    for li, (n, cin, cout, stride) in enumerate(zip(LAYERS, IN_CHANNELS, OUT_CHANNELS, STRIDES)):
        for b in range(n):
            p = f"layer{li + 1}.{b}"
            s = stride if b == 0 else 1
            out = relu(bn_eval(conv_same(x, a[f"{p}.conv1.weight"], 1), a, f"{p}.bn1"))
            out = relu(bn_eval(conv_same(out, a[f"{p}.conv2.weight"], s), a, f"{p}.bn2"))
            out = bn_eval(conv_same(out, a[f"{p}.conv3.weight"], 1), a, f"{p}.bn3")
            identity = x
            if b == 0:  # stride != 1 or in_channel != out_channel
                identity = bn_eval(conv_same(x, a[f"{p}.down_sample_layer.0.weight"], s), a,
                                   f"{p}.down_sample_layer.1")
            x = relu(out + identity)
    return x


def recipe_cfg(path):
    cfg = get_cfg()
    cfg.merge_from_file("configs/Market1501/alignedpp_R50.yml")
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = str(path)
    cfg.MODEL.HEADS.NUM_CLASSES = 751
    return cfg


def test_same_padding_reference_is_the_model_zoo_rule():
    """The rule the reference uses: a 3x3 stride-2 layer on an even size pads 0 before and 1
    after; the 7x7 stride-2 stem 2 and 3; odd sizes pad symmetrically."""
    assert same_padding(64, 3, 2) == (0, 1)
    assert same_padding(256, 7, 2) == (2, 3)
    assert same_padding(5, 3, 2) == (1, 1)
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(16, 1, 2) == (0, 0)


@pytest.mark.parametrize("size", [(64, 40), (64, 32)])
def test_modelzoo_backbone_from_zoo_checkpoint_equals_numpy_zoo_resnet50(tmp_path, size, caplog):
    arrays = zoo_checkpoint_arrays()
    path = write_zoo_checkpoint(tmp_path / "resnet50_zoo.ckpt", arrays)
    cfg = recipe_cfg(path)
    assert cfg.MODEL.BACKBONE.CONVENTION == "modelzoo" and cfg.MODEL.BACKBONE.PRETRAIN
    model = build_model(cfg)
    with caplog.at_level(logging.WARNING, logger="fastreid_ms"):
        report = load_pretrained_backbone(model, cfg)
    assert not [r for r in caplog.records if "CONVENTION" in r.getMessage()]
    assert len(report.loaded) == len(list(model.backbone.get_parameters()))
    assert report.missing == [] and sorted(report.skipped_classifier) == ["end_point.bias",
                                                                          "end_point.weight"]
    model.set_train(False)
    x = np.random.default_rng(1).standard_normal((2, 3) + size).astype(np.float32)
    ours = model.backbone(ms.Tensor(x)).asnumpy()
    ref = zoo_resnet50_forward(x, arrays)
    assert ours.shape == ref.shape == (2, 2048, size[0] // 32, -(-size[1] // 32))
    # Measured: 6e-7 of the largest feature; BN eps 1e-5 instead of 1e-4 moves it by 5e-4.
    scale = np.abs(ref).max()
    np.testing.assert_allclose(ours, ref, atol=2e-5 * scale, rtol=0)

    # torchvision's numerics on the same weights give other features (padding, BN eps).
    tv = ResNet(50, convention="torchvision")
    load_imagenet_weights(tv, path)
    tv.set_train(False)
    other = tv(ms.Tensor(x)).asnumpy()
    assert np.abs(other - ref).max() > 0.05 * scale  # measured 0.41


def test_convention_mismatch_warns(tmp_path, caplog):
    tv_net = ResNet(18, base_width=8, convention="torchvision")
    state = {n.replace("down_sample_layer", "downsample").replace(".gamma", ".weight")
             .replace(".beta", ".bias").replace(".moving_mean", ".running_mean")
             .replace(".moving_variance", ".running_var"): p.asnumpy()
             for n, p in tv_net.parameters_and_names()}
    npz = str(tmp_path / "tv.npz")
    np.savez(npz, **state)
    with caplog.at_level(logging.WARNING, logger="fastreid_ms"):
        load_imagenet_weights(ResNet(18, base_width=8, convention="torchvision"), npz)
    assert not [r for r in caplog.records if "CONVENTION" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastreid_ms"):
        load_imagenet_weights(ResNet(18, base_width=8, convention="modelzoo"), npz)
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "torchvision weights" in msg and "MODEL.BACKBONE.CONVENTION torchvision" in msg
    assert "'same' padding" in msg


def test_missing_imagenet_file_names_the_path_the_seed_file_and_the_way_out(tmp_path):
    cfg = recipe_cfg(tmp_path / "nowhere" / "resnet50.ckpt")
    with pytest.raises(PretrainedWeightsMissing) as info:
        check_pretrained_weights(cfg)
    msg = str(info.value)
    assert str(tmp_path / "nowhere" / "resnet50.ckpt") in msg
    assert "resnet50_ascend_v130_imagenet2012_official_cv_bs256_top1acc76.97__top5acc_93.44.ckpt" in msg
    assert "MODEL.BACKBONE.PRETRAIN False" in msg
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = ""
    with pytest.raises(PretrainedWeightsMissing, match="PRETRAIN_PATH is empty"):
        check_pretrained_weights(cfg)
    cfg.MODEL.BACKBONE.PRETRAIN = False
    assert check_pretrained_weights(cfg) is None
