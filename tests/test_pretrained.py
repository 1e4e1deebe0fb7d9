"""ImageNet weight loading: model-zoo .ckpt, torchvision .npz / .safetensors, errors, and the
torchvision converter's naming (PyTorch itself is not needed)."""
import logging
import os
import sys

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms

from fastreid_ms.config import get_cfg
from fastreid_ms.modeling import build_model
from fastreid_ms.modeling.backbones import ResNet
from fastreid_ms.modeling.backbones.pretrained import (load_imagenet_weights,
                                                       load_pretrained_backbone, read_weight_file,
                                                       torchvision_to_ours, weights_convention)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import convert_torchvision  # noqa: E402


pytestmark = pytest.mark.usefixtures("pynative")


def random_state(net, seed):
    """{our name: random array} for every parameter of ``net`` (variances kept positive)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, p in net.parameters_and_names():
        arr = rng.normal(size=p.shape).astype(np.float32)
        if name.endswith("moving_variance"):
            arr = np.abs(arr) + 0.5
        state[name] = arr
    return state


def to_torchvision_names(state):
    """Written independently of the loader: our/model-zoo names -> torchvision names."""
    out = {}
    for name, value in state.items():
        tv = name.replace("down_sample_layer", "downsample")
        tv = (tv.replace(".gamma", ".weight").replace(".beta", ".bias")
              .replace(".moving_mean", ".running_mean").replace(".moving_variance", ".running_var"))
        if tv.endswith(".running_mean"):
            out[tv.replace(".running_mean", ".num_batches_tracked")] = np.array(7, np.int64)
        out[tv] = value
    return out


def assert_backbone_equals(net, state):
    params = dict(net.parameters_and_names())
    assert set(params) == set(state)
    for name, value in state.items():
        np.testing.assert_array_equal(params[name].asnumpy(), value, err_msg=name)


def save_ckpt(entries, path):
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in entries.items()], path)
    return path


def test_model_zoo_checkpoint_fills_every_parameter(tmp_path, caplog):
    src = ResNet(50, base_width=8)
    state = random_state(src, 0)
    extra = {"end_point.weight": np.ones((10, 256), np.float32),
             "end_point.bias": np.ones((10,), np.float32),
             "moments.conv1.weight": np.ones(state["conv1.weight"].shape, np.float32),
             "learning_rate": np.array(0.1, np.float32),
             "global_step": np.array([5], np.int32)}
    path = save_ckpt({**state, **extra}, str(tmp_path / "resnet50_zoo.ckpt"))
    net = ResNet(50, base_width=8)
    with caplog.at_level(logging.INFO, logger="fastreid_ms"):
        report = load_imagenet_weights(net, path)
    assert_backbone_equals(net, state)
    assert len(report.loaded) == len(state) and not report.missing and not report.unexpected
    assert sorted(report.skipped_classifier) == ["end_point.bias", "end_point.weight"]
    assert "moments.conv1.weight" in report.ignored
    assert "loaded" in caplog.text and "shape mismatch" in caplog.text


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_torchvision_names_fill_every_parameter(tmp_path, fmt):
    src = ResNet(18, base_width=8, last_stride=1)
    state = random_state(src, 1)
    tv = to_torchvision_names(state)
    tv["fc.weight"] = np.zeros((1000, 64), np.float32)
    tv["fc.bias"] = np.zeros((1000,), np.float32)
    assert "layer2.0.downsample.0.weight" in tv and "bn1.running_var" in tv
    path = str(tmp_path / f"resnet18_tv.{fmt}")
    if fmt == "npz":
        np.savez(path, **tv)
    else:
        from safetensors.numpy import save_file
        save_file({f"module.{k}": v for k, v in tv.items()}, path)  # a DataParallel prefix
    net = ResNet(18, base_width=8, last_stride=1)
    report = load_imagenet_weights(net, path)
    assert_backbone_equals(net, state)
    assert not report.missing and not report.unexpected and not report.mismatched
    assert len(report.skipped_classifier) == 2


def test_pretrain_path_loaded_into_the_models_backbone(tmp_path):
    """What the trainer does at start: load_pretrained_backbone(model, cfg)."""
    state = random_state(ResNet(18, base_width=8), 2)
    path = save_ckpt(state, str(tmp_path / "r18.ckpt"))
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.DEPTH = 18
    cfg.MODEL.BACKBONE.BASE_WIDTH = 8
    cfg.MODEL.BACKBONE.FEAT_DIM = 64
    cfg.MODEL.BACKBONE.PRETRAIN = True
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = path
    model = build_model(cfg)
    report = load_pretrained_backbone(model, cfg)
    assert len(report.loaded) == len(state)
    assert_backbone_equals(model.backbone, state)
    cfg.MODEL.BACKBONE.PRETRAIN = False
    assert load_pretrained_backbone(build_model(cfg), cfg) is None


def test_wrong_shapes_name_the_file_and_the_fix(tmp_path):
    path = save_ckpt(random_state(ResNet(18, base_width=16), 3), str(tmp_path / "wide.ckpt"))
    with pytest.raises(ValueError) as err:
        load_imagenet_weights(ResNet(18, base_width=8), path)
    msg = str(err.value)
    assert path in msg and "shape" in msg and "BASE_WIDTH" in msg and "conv1.weight" in msg


def test_foreign_checkpoint_is_rejected(tmp_path):
    path = save_ckpt({"encoder.embed.weight": np.ones((4, 4), np.float32),
                      "decoder.out.bias": np.ones((4,), np.float32)}, str(tmp_path / "bert.ckpt"))
    with pytest.raises(ValueError, match="holds no parameter of a ResNet backbone") as err:
        load_imagenet_weights(ResNet(18, base_width=8), path)
    assert path in str(err.value)


@pytest.mark.parametrize("name,content", [("garbage.ckpt", b"not a checkpoint" * 20),
                                          ("garbage.npz", b"PK\x03\x04 broken zip"),
                                          ("garbage.safetensors", b"\x00" * 64)])
def test_file_that_is_not_a_checkpoint_names_its_path(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        load_imagenet_weights(ResNet(18, base_width=8), str(path))
    assert str(path) in str(err.value)


def test_pickled_npz_is_refused(tmp_path):
    path = str(tmp_path / "objects.npz")
    np.savez(path, conv1=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="objects.npz"):
        read_weight_file(path)


def test_missing_file_and_pth_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        read_weight_file(str(tmp_path / "nope.ckpt"))
    pth = tmp_path / "resnet50.pth"
    pth.write_bytes(b"\x80\x02")
    with pytest.raises(ValueError, match="convert_torchvision.py"):
        read_weight_file(str(pth))
    other = tmp_path / "weights.h5"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown weight file type"):
        read_weight_file(str(other))


@pytest.mark.parametrize("tv,ours", [
    ("conv1.weight", "conv1.weight"),
    ("bn1.weight", "bn1.gamma"),
    ("bn1.bias", "bn1.beta"),
    ("bn1.running_mean", "bn1.moving_mean"),
    ("layer3.4.bn2.running_var", "layer3.4.bn2.moving_variance"),
    ("layer1.0.downsample.0.weight", "layer1.0.down_sample_layer.0.weight"),
    ("layer1.0.downsample.1.weight", "layer1.0.down_sample_layer.1.gamma"),
    ("layer1.0.downsample.1.bias", "layer1.0.down_sample_layer.1.beta"),
    ("module.layer4.2.conv3.weight", "layer4.2.conv3.weight"),
    ("fc.weight", "end_point.weight"),
])
def test_torchvision_renaming(tv, ours):
    assert torchvision_to_ours(tv) == ours


def test_converter_names_and_checkpoint_without_torch(tmp_path):
    src = ResNet(18, base_width=8)
    state = random_state(src, 4)
    tv = to_torchvision_names(state)
    tv["fc.weight"] = np.zeros((5, 64), np.float32)
    named = convert_torchvision.convert_names(tv)
    assert not any(n.endswith("num_batches_tracked") for n, _ in named)
    assert "end_point.weight" in dict(named)
    out = str(tmp_path / "converted.ckpt")
    convert_torchvision.write_checkpoint(named, out)
    assert os.listdir(tmp_path) == ["converted.ckpt"]
    # The converted file says its weights are torchvision's (names alone are ours).
    assert weights_convention(read_weight_file(out)) == "torchvision"
    net = ResNet(18, base_width=8, convention="torchvision")
    load_imagenet_weights(net, out)
    assert_backbone_equals(net, state)


def test_converter_without_torch_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    pth = tmp_path / "resnet50.pth"
    pth.write_bytes(b"\x80\x02")
    code = convert_torchvision.main([str(pth), str(tmp_path / "out.ckpt")])
    err = capsys.readouterr().err
    assert code == 2
    assert "PyTorch is not installed" in err and ".npz" in err and ".safetensors" in err
    assert not (tmp_path / "out.ckpt").exists()
    assert convert_torchvision.main([str(tmp_path / "none.pth"), "x.ckpt"]) == 2
    assert convert_torchvision.main([str(pth), str(tmp_path / "out.bin")]) == 2


def test_model_zoo_resnet18_block_norm_names(tmp_path):
    """The model-zoo ResNet-18/34 blocks call their norms bn1d / bn2d."""
    state = random_state(ResNet(18, base_width=8), 5)
    zoo = {}
    for name, value in state.items():
        if name.startswith("layer") and (".bn1." in name or ".bn2." in name):
            name = name.replace(".bn1.", ".bn1d.").replace(".bn2.", ".bn2d.")
        zoo[name] = value
    assert "layer1.0.bn1d.gamma" in zoo
    path = save_ckpt(zoo, str(tmp_path / "resnet18_zoo.ckpt"))
    net = ResNet(18, base_width=8)
    report = load_imagenet_weights(net, path)
    assert_backbone_equals(net, state)
    assert not report.unexpected and not report.missing
