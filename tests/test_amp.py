"""Mixed precision proven on the tiny AlignedReID++ model of configs/Demo/alignedpp_demo.yml.

What MindSpore documents for ``mindspore.amp.auto_mixed_precision`` (float16):

* O1: the white-list cells / operators (Conv2d, Dense, MatMul, ReLU, ...) compute in float16 and
  their results are cast back to float32 (so every cell's *output* is float32);
* O2: everything in float16 except the black list (BatchNorm, LayerNorm), which computes in
  float32 and whose output is cast back to float16;
* O3: everything in float16, BN included.

On top of that ``apply_amp`` keeps the loss cells in float32 (``keep_losses_float32``).

Two independent witnesses of the precision a cell computes in:

* its output dtype, recorded by forward hooks during a real training forward (PyNative);
* the underflow probe: 2**-26 is below half of float16's smallest subnormal (2**-24), so a cell
  that casts its input to float16 sees 0. A bias-free Conv2d / Dense / eval-mode BN (moving
  mean 0, variance 1) computing in float16 therefore gives exactly its output at 0 on an
  input filled with 2**-26, in float32 it does not. This works in PyNative and GRAPH mode and
  also sees O1, whose outputs are float32.

The trainer-level test runs DefaultTrainer at O2 with a large initial loss scale: the float16
gradients overflow (in float32 they would not), the updates are skipped and the scale drops.
Every O1 / O2 / O3 case here fails when ``apply_amp`` is made a no-op (the O0 cases are the
controls that show the probes tell float32 from float16); the O2 / O3 cases also fail when
``keep_losses_float32`` does nothing, and the O2 cases when O2 is converted like O3.
"""
import math
import os

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms
from mindspore import nn

from fastreid_ms.config import get_cfg
from fastreid_ms.engine import DefaultTrainer
from fastreid_ms.engine.train_step import apply_amp
from fastreid_ms.modeling import build_model
from fastreid_ms.utils.events import read_metrics

pytestmark = pytest.mark.usefixtures("pynative")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "Demo", "alignedpp_demo.yml")
F16, F32 = ms.float16, ms.float32
TINY = 2.0 ** -26
# The demo's ResNet-18 made smaller still: base width 8 (a 64-channel map), 32x16 input with
# last stride 1 -> a 2 x 1 map (2 parts).
TINY_MODEL = ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.LAST_STRIDE", "1",
              "MODEL.BACKBONE.BASE_WIDTH", "8", "MODEL.BACKBONE.FEAT_DIM", "64",
              "MODEL.HEADS.LOCAL_DIM", "16", "INPUT.SIZE_TRAIN", "[32, 16]",
              "INPUT.SIZE_TEST", "[32, 16]"]
NUM_CLASSES = 4

# The L2-normalised part features ("local") are computed in float32 at every level
# (l2_normalize: a float16 sum of squares overflows, its 1e-12 floor rounds to 0).
# level -> {kind: dtype of the cell's own output in a training forward}. "features" are the
# head's outputs, "loss" the loss cells' outputs.
OUTPUT_DTYPES = {
    "O0": dict(conv=F32, dense=F32, relu=F32, bn=F32, features=F32, loss=F32),
    "O1": dict(conv=F32, dense=F32, relu=F32, bn=F32, features=F32, loss=F32),  # cast back
    "O2": dict(conv=F16, dense=F16, relu=F16, bn=F32, features=F16, loss=F32),
    "O3": dict(conv=F16, dense=F16, relu=F16, bn=F16, features=F16, loss=F32),
}
# level -> the kinds of cell that compute in float16 (the underflow probe).
COMPUTE_F16 = {"O0": set(), "O1": {"conv", "dense"}, "O2": {"conv", "dense"},
               "O3": {"conv", "dense", "bn"}}


def tiny_cfg(cfg=None):
    """``cfg`` (default: a fresh config) with the demo recipe and the tiny model merged in."""
    cfg = get_cfg() if cfg is None else cfg
    cfg.merge_from_file(DEMO)
    cfg.merge_from_list(TINY_MODEL + ["MODEL.HEADS.NUM_CLASSES", str(NUM_CLASSES)])
    return cfg


def kind(cell):
    """The kind of cell whose precision is checked, or None (containers, pools, wrappers)."""
    if getattr(cell, "loss_name", None) is not None:
        return "loss"
    for cls, name in ((nn.Conv2d, "conv"), (nn.Dense, "dense"), (nn.BatchNorm2d, "bn"),
                      (nn.ReLU, "relu")):
        if isinstance(cell, cls):
            return name
    return None


def computes_in_float16(cell, shape):
    """The underflow probe (module docstring): ``cell`` in eval mode on 2**-26 vs on 0."""
    tiny = cell(ms.Tensor(np.full(shape, TINY, np.float32))).astype(F32).asnumpy()
    zero = cell(ms.Tensor(np.zeros(shape, np.float32))).astype(F32).asnumpy()
    return bool(np.array_equal(tiny, zero))


def reset_bn_statistics(model):
    """Moving mean 0 and variance 1, so that an eval-mode BN passes 2**-26 on in float32."""
    for name, p in model.parameters_and_names():
        if name.endswith("moving_mean"):
            p.set_data(ms.Tensor(np.zeros(p.shape, np.float32)))
        elif name.endswith("moving_variance"):
            p.set_data(ms.Tensor(np.ones(p.shape, np.float32)))


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 3, 32, 16)).astype(np.float32)
    return ms.Tensor(images), ms.Tensor((np.arange(n) % NUM_CLASSES).astype(np.int32))


_MODELS = {}


def converted(level):
    """The tiny model converted at ``level`` (built once per level: the O1 rewrite is slow)."""
    if level not in _MODELS:
        ms.set_seed(0)
        _MODELS[level] = apply_amp(build_model(tiny_cfg()), level)
    model = _MODELS[level]
    reset_bn_statistics(model)
    return model


def record_forward(model, images, targets):
    """One training forward with forward hooks: {cell name: (cell, inputs, output)}."""
    records, handles = {}, []
    for name, cell in model.cells_and_names():
        if kind(cell) is None and cell is not model.heads:
            continue

        def hook(cell, inputs, output, name=name):
            records[name] = (cell, inputs, output)
        handles.append(cell.register_forward_hook(hook))
    model.set_train(True)
    try:
        losses = model(images, targets)
    finally:
        for handle in handles:
            handle.remove()
    return losses, records


@pytest.mark.parametrize("level", ["O0", "O1", "O2", "O3"])
def test_pynative_cells_compute_in_the_precision_of_the_level(level):
    """PyNative, one training forward with forward hooks, then the underflow probe:

    * each conv / dense / ReLU / BN / head / loss output dtype is the level's (OUTPUT_DTYPES);
    * every Conv2d / Dense / BatchNorm2d, called on the input shape it got in the forward
      pass, computes in float16 exactly when the level says (COMPUTE_F16): O1 and O2 the conv
      and dense layers, O3 also BN, O0 none;
    * the loss cells compute in float32: their values equal fresh float32 losses given the
      head outputs the model produced (cast to float32);
    * the parameters stay float32 (the optimizer updates float32 weights)."""
    model = converted(level)
    images, targets = batch()
    losses, records = record_forward(model, images, targets)
    expected = OUTPUT_DTYPES[level]
    for name, (cell, _, output) in records.items():
        if cell is model.heads:
            assert {k: v.dtype for k, v in output.items()} == {
                "cls_logits": expected["features"], "global": expected["features"],
                "local": F32}, name
        else:
            assert output.dtype == expected[kind(cell)], (name, output.dtype)
    # 21 convs (20 in the backbone, the local 1x1), 21 BN, 10 ReLU cells, the classifier, the
    # 3 losses and the head (None)
    counts = {}
    for cell, _, _ in records.values():
        counts[kind(cell)] = counts.get(kind(cell), 0) + 1
    assert counts == {"conv": 21, "bn": 21, "dense": 1, "relu": 10, "loss": 3, None: 1}
    assert all(p.dtype == F32 for p in model.get_parameters())

    head_out = {k: v.astype(F32) for k, v in records["heads"][2].items()}
    reference = build_model(tiny_cfg()).losses
    for i, name in enumerate(model.loss_names):
        assert losses[name].dtype == F32
        ref = float(reference[i](head_out, targets).asnumpy())
        assert float(losses[name].asnumpy()) == pytest.approx(ref, rel=1e-6, abs=1e-7), name

    reset_bn_statistics(model)  # the forward moved them
    model.set_train(False)
    found = {}
    for name, (cell, inputs, _) in records.items():
        if kind(cell) in ("conv", "dense", "bn"):
            found.setdefault(kind(cell), set()).add(computes_in_float16(cell, inputs[0].shape))
    assert found == {k: {k in COMPUTE_F16[level]} for k in ("conv", "dense", "bn")}


@pytest.mark.parametrize("level", ["O0", "O1", "O2", "O3"])
def test_graph_mode_computes_in_float16(level):
    """GRAPH mode: the whole model's eval features (dtype, and the underflow probe: 0 for an
    input of 2**-26 when the convolutions compute in float16) and the probe on the stem
    conv, the stem BN, the head's 1x1 conv, the head's BN and the classifier."""
    model = converted(level)
    ms.set_context(mode=ms.GRAPH_MODE)
    model.set_train(False)
    feats = model(ms.Tensor(np.full((2, 3, 32, 16), TINY, np.float32)))
    expected = OUTPUT_DTYPES[level]["features"]
    assert {k: v.dtype for k, v in feats.items()} == {"global": expected, "local": F32}
    g = feats["global"].astype(F32).asnumpy()
    if level == "O0":
        assert np.abs(g).max() > 0
    else:  # the stem convolution already rounds the input to 0 (BN beta 0, no biases)
        assert np.abs(g).max() == 0
    unwrap = lambda cell: getattr(cell, "_backbone", cell)  # noqa: E731 (O2's BN wrapper)
    probes = {"conv": [(model.backbone.conv1, (2, 3, 32, 16)),
                       (model.heads.local_conv, (2, 64, 2, 1))],
              "bn": [(unwrap(model.backbone.bn1), (2, 8, 16, 8)),
                     (unwrap(model.heads.local_bn), (2, 64, 2, 1))],
              "dense": [(model.heads.classifier, (2, 64))]}
    for k, cells in probes.items():
        for cell, shape in cells:
            assert computes_in_float16(cell, shape) == (k in COMPUTE_F16[level]), (k, shape)


def _scale_reference(init, factor, window, finite_flags):
    """DynamicLossScaler's rule, written out: divide by ``factor`` (floor 1) on overflow,
    multiply after ``window`` finite steps in a row. The scale after each step."""
    scale, good, out = init, 0, []
    for finite in finite_flags:
        if finite:
            good += 1
            if good == window:
                scale, good = scale * factor, 0
        else:
            scale, good = max(scale / factor, 1.0), 0
        out.append(scale)
    return out


def test_trainer_at_o2_overflows_lowers_then_grows_the_scale(synthetic_cfg, tmp_path):
    """DefaultTrainer, PyNative, O2, a one-epoch run (3 iterations) of the synthetic data with
    the demo's 2 warm-up epochs (cut short). At an initial scale of 2**16 the float16
    gradients overflow (float32 ones would not: a no-op AMP never skips), so the first
    updates are skipped and the scale drops by SCALE_FACTOR 4; once a step is finite it grows
    again (SCALE_WINDOW 1). The losses stay finite, the model is updated, and the learning
    rate follows the cut warm-up line b (i + 1) / W with W = 2 epochs = 6 iterations.

    GRAPH mode is not the obstacle for our TrainStep: its compiled step with a
    DynamicLossScaler runs on CPU (tests/test_train_step.py runs it at O1/O2/O3). What
    MindSpore refuses on CPU is its own ``amp.build_train_network`` with a dynamic loss scale
    manager (TrainOneStepWithLossScaleCell): ``ValueError: Only `loss_scale_manager=None` or
    `loss_scale_manager=FixedLossScaleManager(drop_overflow_update=False)`are supported on
    device `CPU`.`` PyNative is used here because compiling this model's training graph
    (the DMLI loop of the local loss) takes about 25 s on a 2-core CPU."""
    cfg = tiny_cfg(synthetic_cfg)
    cfg.merge_from_list([
        "OUTPUT_DIR", str(tmp_path), "MODEL.MODE", "PYNATIVE", "MODEL.HEADS.NUM_CLASSES", "0",
        "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2", "DATALOADER.NUM_WORKERS", "1",
        "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_EPOCHS", "2", "SOLVER.WARMUP_METHOD", "linear",
        "SOLVER.WARMUP_START_LR", "0.0", "SOLVER.BASE_LR", "0.01",
        "SOLVER.LOG_PERIOD", "1", "SOLVER.CHECKPOINT_PERIOD", "0",
        "SOLVER.AMP.LEVEL", "O2", "SOLVER.AMP.INIT_SCALE", str(2.0 ** 16),
        "SOLVER.AMP.SCALE_FACTOR", "4", "SOLVER.AMP.SCALE_WINDOW", "1",
        "TEST.IMS_PER_BATCH", "32", "TEST.RERANK.ENABLED", "False", "TEST.FLIP.ENABLED", "False"])
    cfg.freeze()
    ms.set_seed(0)
    trainer = DefaultTrainer(cfg)
    assert trainer.amp_level == "O2" and trainer.iters_per_epoch == 3
    w0 = trainer.model.heads.classifier.weight.asnumpy().copy()
    trainer.train()
    train = [r for r in read_metrics(str(tmp_path / "metrics.json")) if "total_loss" in r]
    assert [r["iteration"] for r in train] == [1, 2, 3]
    finite = [r["skipped_updates"] == 0 for r in train]
    scales = [r["loss_scale"] for r in train]
    assert scales == _scale_reference(2.0 ** 16, 4, 1, finite)
    assert not finite[0] and scales[0] == 2.0 ** 14  # float16 overflow at 2**16
    assert finite[-1] and scales[-1] > min(scales)  # lowered, then grew again
    for i, r in enumerate(train):
        assert math.isfinite(r["total_loss"])
        assert r["lr"] == pytest.approx(0.01 * (i + 1) / 6, rel=1e-6)
    assert not np.array_equal(trainer.model.heads.classifier.weight.asnumpy(), w0)
    assert int(trainer.optimizer.global_step.asnumpy()[0]) == 3


@pytest.mark.parametrize("mode", ["PYNATIVE", "GRAPH"])
def test_part_features_are_normalised_in_float32_at_o2(mode):
    """The paper's test parts (8 x 2048, the backbone map max-pooled over the width) of large
    activations: their float16 sum of squares (2048 x 36 = 73,728) would overflow past 65,504
    and give zero features; L2Norm keeps them in float32, unit length."""
    from projects.AlignedReIDpp.alignedreidpp.head import AlignedReIDppHead
    head = apply_amp(AlignedReIDppHead(feat_dim=2048, num_classes=0, local_test_feat="backbone"),
                     "O2")
    ms.set_context(mode=getattr(ms, f"{mode}_MODE"))
    head.set_train(False)
    local = head(ms.Tensor(np.full((2, 2048, 8, 4), 6.0, np.float32)))["local"]
    assert local.dtype == F32
    norms = np.linalg.norm(local.asnumpy(), axis=2)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)
