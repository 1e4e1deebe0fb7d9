"""Export of the eval graph (fastreid_ms/modeling/export_wrapper.py, tools/export.py):
MINDIR parity through mindspore.load + nn.GraphCell, ONNX parity through onnxruntime, dynamic
batch, AIR refused off Ascend, atomic writes and the command line."""
import os

import numpy as np
import pytest

import fastreid_ms  # noqa: F401  (CPU kernel ISA before MindSpore runs)
import mindspore as ms
from mindspore import nn, ops

from fastreid_ms.config import get_cfg
from fastreid_ms.modeling.export_wrapper import (
    InferenceWrapper, check_format, export_inference_model, load_inference_weights,
    order_feature_names, parse_batch_size, probe_feature_names, resolve_output_path)
from _builders import load_script, randomize_bn_stats  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 64, 32
ALIGNED_PLUGIN = "projects.AlignedReIDpp.alignedreidpp"


def tiny_opts(convention="modelzoo"):
    """A tiny ResNet-18 (BASE_WIDTH 16) with the AlignedReID++ head, 64 x 32 input, in one of
    the backbone conventions (MODEL.BACKBONE.CONVENTION)."""
    return ["PLUGINS", [ALIGNED_PLUGIN], "MODEL.BACKBONE.CONVENTION", convention,
            "MODEL.META_ARCHITECTURE", "Baseline",
            "MODEL.HEADS.NAME", "AlignedReIDppHead",
            "MODEL.BACKBONE.DEPTH", 18, "MODEL.BACKBONE.BASE_WIDTH", 16,
            "MODEL.BACKBONE.FEAT_DIM", 128, "MODEL.HEADS.NUM_CLASSES", 6,
            "MODEL.HEADS.LOCAL_DIM", 16,
            "INPUT.SIZE_TRAIN", [HEIGHT, WIDTH], "INPUT.SIZE_TEST", [HEIGHT, WIDTH]]


def tiny_cfg(convention="modelzoo"):
    cfg = get_cfg()
    cfg.merge_from_list(tiny_opts(convention))
    return cfg


@pytest.fixture(scope="module", params=["modelzoo", "torchvision"])
def tiny_model(request):
    """Every export test runs on both backbone conventions ('same' padding with BN eps 1e-4,
    symmetric padding with 1e-5)."""
    from fastreid_ms.modeling import build_model
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    model = build_model(tiny_cfg(request.param))
    assert model.backbone.convention == request.param
    randomize_bn_stats(model)
    model.set_train(False)
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).randn(3, 3, HEIGHT, WIDTH).astype(np.float32)


@pytest.fixture(scope="module")
def reference(tiny_model, images):
    out = tiny_model(ms.Tensor(images))
    return {k: v.asnumpy() for k, v in out.items()}


def relative_error(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# onnxruntime against MindSpore: largest difference over the largest feature value. Measured
# 8e-7 (global) and 1.1e-6 (local) on both backbone conventions.
ONNX_RTOL = 1e-5


def test_eval_features_and_order(tiny_model, reference):
    assert set(reference) == {"global", "local"}
    assert reference["global"].shape == (3, 128)
    assert reference["local"].shape[0] == 3 and reference["local"].ndim == 3
    assert probe_feature_names(tiny_model, (HEIGHT, WIDTH)) == ("global", "local")
    assert order_feature_names(["zeta", "local", "alpha", "global"]) == ("global", "local", "alpha", "zeta")


@pytest.mark.parametrize("batch_size", [3, None])
def test_mindir_parity(tmp_path, tiny_model, images, reference, batch_size):
    path, names = export_inference_model(tiny_model, "MINDIR", str(tmp_path / "model"), (HEIGHT, WIDTH),
                                         batch_size=batch_size)
    assert path == str(tmp_path / "model.mindir") and names == ("global", "local")
    assert sorted(os.listdir(tmp_path)) == ["model.mindir"]  # no temporaries left
    graph = nn.GraphCell(ms.load(path))
    out = graph(ms.Tensor(images))
    assert isinstance(out, tuple) and len(out) == 2
    for value, name in zip(out, names):
        np.testing.assert_allclose(value.asnumpy(), reference[name], rtol=1e-6, atol=1e-6)
    if batch_size is None:  # dynamic batch: other batch sizes run too
        for b in (1, 2):
            out_b = graph(ms.Tensor(images[:b]))
            for value, name in zip(out_b, names):
                assert value.shape[0] == b
                np.testing.assert_allclose(value.asnumpy(), reference[name][:b], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size", [3, None])
def test_onnx_parity(tmp_path, tiny_model, images, reference, batch_size):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'test' extra")
    path, names = export_inference_model(tiny_model, "onnx", str(tmp_path / "model.onnx"), (HEIGHT, WIDTH),
                                         batch_size=batch_size)
    assert path == str(tmp_path / "model.onnx")
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["global", "local"]
    batch_dim = session.get_inputs()[0].shape[0]
    assert batch_dim == ("batch" if batch_size is None else 3)
    out = session.run(None, {"images": images})
    for value, name in zip(out, names):
        assert value.shape == reference[name].shape
        assert relative_error(value, reference[name]) <= ONNX_RTOL
    if batch_size is None:
        assert session.get_outputs()[0].shape[0] == "batch"
        out1 = session.run(None, {"images": images[:1]})
        for value, name in zip(out1, names):
            assert relative_error(value, reference[name][:1]) <= ONNX_RTOL


@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_flip_averaged_export(tmp_path, tiny_model, images, reference, fmt):
    """TEST.FLIP.ENABLED: the graph returns the mean of the features of the images and of
    their mirror images, as the evaluation computes them."""
    mirrored = tiny_model(ms.Tensor(np.ascontiguousarray(images[..., ::-1])))
    expected = {k: (reference[k] + mirrored[k].asnumpy()) * np.float32(0.5) for k in reference}
    assert relative_error(expected["global"], reference["global"]) > 1e-3  # flipping matters
    path, names = export_inference_model(tiny_model, fmt, str(tmp_path / "flip"), (HEIGHT, WIDTH),
                                         batch_size=None, flip=True)
    if fmt == "MINDIR":
        out = [v.asnumpy() for v in nn.GraphCell(ms.load(path))(ms.Tensor(images))]
        for value, name in zip(out, names):
            np.testing.assert_allclose(value, expected[name], rtol=1e-6, atol=1e-6)
    else:
        ort = pytest.importorskip("onnxruntime")
        out = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"images": images})
        for value, name in zip(out, names):
            assert relative_error(value, expected[name]) <= ONNX_RTOL


def test_air_refused_off_ascend(tmp_path, tiny_model):
    ms.set_device("CPU")
    with pytest.raises(RuntimeError, match="AIR export needs an Ascend device .*runs on CPU.*export MINDIR"):
        export_inference_model(tiny_model, "AIR", str(tmp_path / "m"), (HEIGHT, WIDTH), 1)
    assert os.listdir(tmp_path) == []


def test_wrapper_keeps_parameter_names(tiny_model):
    before = [p.name for p in tiny_model.get_parameters()]
    wrapper = InferenceWrapper(tiny_model, ("global", "local"))
    assert [p.name for p in tiny_model.get_parameters()] == before
    assert [p.name for p in wrapper.get_parameters()] == before
    assert before[0].startswith("backbone.")


def test_format_and_batch_arguments():
    assert parse_batch_size("dynamic") is None and parse_batch_size(None) is None
    assert parse_batch_size("4") == 4 and parse_batch_size(1) == 1
    for bad in ("0", "-2", "many"):
        with pytest.raises(ValueError, match="--batch-size must be a positive integer or 'dynamic'"):
            parse_batch_size(bad)
    with pytest.raises(ValueError, match="Unknown export format 'TFLITE': use one of MINDIR, AIR, ONNX"):
        check_format("TFLITE", 1)
    assert check_format("mindir", None) == "MINDIR"
    assert resolve_output_path("out/m", "ONNX") == "out/m.onnx"
    assert resolve_output_path("out/m.MINDIR", "MINDIR") == "out/m.MINDIR"
    with pytest.raises(ValueError, match="feature_names is empty"):
        InferenceWrapper(nn.Dense(2, 2), ())


class NotADict(nn.Cell):
    def construct(self, x):
        return ops.mean(x, axis=(2, 3))


def test_probe_requires_feature_dict():
    with pytest.raises(TypeError, match="NotADict returned Tensor in eval mode"):
        probe_feature_names(NotADict(), (8, 4))


def test_failed_export_keeps_previous_file(tmp_path, tiny_model, monkeypatch):
    target = tmp_path / "model.mindir"
    target.write_bytes(b"previous export")

    def broken_export(*args, **kwargs):
        raise RuntimeError("simulated failure in the middle of the export")

    monkeypatch.setattr(ms, "export", broken_export)
    with pytest.raises(RuntimeError, match="simulated failure"):
        export_inference_model(tiny_model, "MINDIR", str(target), (HEIGHT, WIDTH), 1,
                               feature_names=("global", "local"))
    assert target.read_bytes() == b"previous export"
    assert sorted(os.listdir(tmp_path)) == ["model.mindir"]


def test_weights_errors(tmp_path, tiny_model):
    from fastreid_ms.utils.checkpoint import CheckpointError
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        load_inference_weights(tiny_model, "")
    with pytest.raises(CheckpointError, match="not found"):
        load_inference_weights(tiny_model, str(tmp_path / "none.ckpt"))


def load_export_tool():
    return load_script("tools/export.py", "export_tool")


def write_config(path, convention="modelzoo"):
    """A config file equivalent to tiny_cfg(convention)."""
    opts = tiny_opts(convention)
    lines = [f"PLUGINS: [{ALIGNED_PLUGIN}]", "MODEL:", "  META_ARCHITECTURE: Baseline",
             f"  BACKBONE: {{DEPTH: 18, BASE_WIDTH: 16, FEAT_DIM: 128, CONVENTION: {convention}}}",
             "  HEADS: {NAME: AlignedReIDppHead, NUM_CLASSES: 6, LOCAL_DIM: 16}",
             f"INPUT: {{SIZE_TRAIN: [{HEIGHT}, {WIDTH}], SIZE_TEST: [{HEIGHT}, {WIDTH}]}}"]
    assert "AlignedReIDppHead" in opts
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_export_command_line(tmp_path, tiny_model, images, reference):
    from fastreid_ms.utils.checkpoint import Checkpointer
    ckpt = Checkpointer(tiny_model, str(tmp_path)).save("model_final", tag_last=False)
    cfg_file = write_config(tmp_path / "tiny.yml", tiny_model.backbone.convention)
    tool = load_export_tool()
    out = tool.main(["--config-file", cfg_file, "MODEL.WEIGHTS", ckpt, "--format", "mindir",
                     "--output", str(tmp_path / "exp" / "net"), "--batch-size", "dynamic"])
    assert out == str(tmp_path / "exp" / "net.mindir")
    graph = nn.GraphCell(ms.load(out))
    for value, name in zip(graph(ms.Tensor(images)), ("global", "local")):
        np.testing.assert_allclose(value.asnumpy(), reference[name], rtol=1e-6, atol=1e-6)
    # The seed's spelling of the options.
    out2 = tool.main(["--config-file", cfg_file, "--file_format", "ONNX", "--file_name", str(tmp_path / "exp" / "net"),
                      "--ckpt_file", ckpt])
    assert out2 == str(tmp_path / "exp" / "net.onnx") and os.path.isfile(out2)
    assert sorted(os.listdir(tmp_path / "exp")) == ["net.mindir", "net.onnx"]
    with pytest.raises(RuntimeError, match="AIR export needs an Ascend device"):
        tool.main(["--config-file", cfg_file, "--format", "AIR", "MODEL.WEIGHTS", ckpt])
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        tool.main(["--config-file", cfg_file])


def test_export_cli_user_errors(tmp_path, capsys):
    from fastreid_ms.utils.checkpoint import CheckpointError
    tool = load_export_tool()
    cfg_file = write_config(tmp_path / "tiny.yml")
    # Options after the overrides (the documented order) are options, not overrides.
    with pytest.raises(CheckpointError, match="x.ckpt"):
        tool.main(["--config-file", cfg_file, "MODEL.WEIGHTS", str(tmp_path / "x.ckpt"), "--format", "ONNX"])
    with pytest.raises(SystemExit):
        tool.main(["--config-file", cfg_file, "--format", "TFLITE"])
    assert "invalid choice: 'TFLITE'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--batch-size must be a positive integer or 'dynamic', got 'some'"):
        tool.main(["--config-file", cfg_file, "--batch-size", "some"])

