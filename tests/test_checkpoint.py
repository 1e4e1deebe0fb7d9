"""Checkpointer: full round trip, fine-tune loading, clear errors, atomic writes (also
under a real kill of the writing process)."""
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms
from mindspore import amp, nn

from fastreid_ms.utils import checkpoint as ckpt_mod
from fastreid_ms.utils.checkpoint import (LAST_CHECKPOINT, PAUSE_ENV, PAUSE_MESSAGE, CheckpointError,
                                          Checkpointer, read_checkpoint)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Heads(nn.Cell):
    def __init__(self, num_classes):
        super().__init__()
        self.classifier = nn.Dense(3, num_classes)

    def construct(self, x):
        return self.classifier(x)


class ToyModel(nn.Cell):
    def __init__(self, num_classes=5, width=3):
        super().__init__()
        self.backbone = nn.SequentialCell([nn.Dense(4, width), nn.BatchNorm1d(width)])
        self.heads = Heads(num_classes)

    def construct(self, x):
        return self.heads(self.backbone(x))


def _trained(num_classes=5):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    model = ToyModel(num_classes)
    opt = nn.Momentum(model.trainable_params(), 0.1, 0.9)
    grads = tuple(ms.Tensor(np.full(p.shape, 0.5, np.float32)) for p in opt.parameters)
    opt(grads)
    opt(grads)
    scaler = amp.DynamicLossScaler(1024.0, 2, 50)
    scaler.scale_value.set_data(ms.Tensor(256.0, ms.float32))
    scaler.counter.set_data(ms.Tensor(7, ms.int32))
    return model, opt, scaler


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log_messages():
    handler = _ListHandler()
    logger = logging.getLogger("fastreid_ms")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_round_trip_restores_everything(tmp_path):
    model, opt, scaler = _trained()
    ck = Checkpointer(model, str(tmp_path), optimizer=opt, loss_scaler=scaler)
    random.seed(3)
    np.random.seed(4)
    path = ck.save("model_0002", epoch=2, iteration=10, best_score=55.5)
    after_py, after_np = random.random(), np.random.rand()
    assert os.path.basename(path) == "model_0002.ckpt"
    assert open(tmp_path / LAST_CHECKPOINT).read().strip() == "model_0002.ckpt"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp") or ".tmp." in p] == []

    model2 = ToyModel(5)
    opt2 = nn.Momentum(model2.trainable_params(), 0.1, 0.9)
    scaler2 = amp.DynamicLossScaler(1024.0, 2, 50)
    ck2 = Checkpointer(model2, str(tmp_path), optimizer=opt2, loss_scaler=scaler2)
    assert ck2.has_checkpoint() and ck2.get_checkpoint_file() == path
    random.random()
    meta = ck2.resume_or_load("", resume=True)
    assert (meta["epoch"], meta["iteration"], meta["best_score"]) == (2, 10, 55.5)
    for name, p in model.parameters_dict().items():
        np.testing.assert_array_equal(model2.parameters_dict()[name].asnumpy(), p.asnumpy())
    for name in ("global_step", "moments.backbone.0.weight", "moments.heads.classifier.bias"):
        np.testing.assert_array_equal(opt2.parameters_dict()[name].asnumpy(),
                                      opt.parameters_dict()[name].asnumpy())
    assert int(opt2.global_step.asnumpy()[0]) == 2
    assert float(scaler2.scale_value.asnumpy()) == 256.0 and int(scaler2.counter.asnumpy()) == 7
    assert random.random() == after_py and np.random.rand() == after_np

    # The file is a plain MindSpore checkpoint too.
    raw = ms.load_checkpoint(path)
    assert "backbone.0.weight" in raw and "optimizer.global_step" in raw


def test_finetune_skips_classifier_of_other_size_with_one_line(tmp_path, log_messages):
    model, _, _ = _trained(num_classes=5)
    path = Checkpointer(model, str(tmp_path)).save("src")
    target = ToyModel(num_classes=9)
    before = target.heads.classifier.weight.asnumpy().copy()
    meta = Checkpointer(target, str(tmp_path / "run")).resume_or_load(path, resume=False)
    assert "epoch" not in meta
    np.testing.assert_array_equal(target.backbone[0].weight.asnumpy(), model.backbone[0].weight.asnumpy())
    np.testing.assert_array_equal(target.heads.classifier.weight.asnumpy(), before)
    skipped = [m for m in log_messages if "classifier of another size" in m]
    assert len(skipped) == 1
    assert "heads.classifier.weight (5, 3) -> (9, 3)" in skipped[0]


def test_resume_does_not_skip_classifier(tmp_path):
    model, opt, _ = _trained(num_classes=5)
    Checkpointer(model, str(tmp_path), optimizer=opt).save("model_0001")
    other = ToyModel(num_classes=9)
    ck = Checkpointer(other, str(tmp_path), optimizer=nn.Momentum(other.trainable_params(), 0.1, 0.9))
    with pytest.raises(CheckpointError, match=r"heads.classifier.weight: checkpoint \(5, 3\) vs model \(9, 3\)"):
        ck.resume_or_load("", resume=True)


def test_mismatch_lists_names_and_shapes(tmp_path):
    model, _, _ = _trained()
    path = Checkpointer(model, str(tmp_path)).save("src")
    wider = ToyModel(width=6)
    with pytest.raises(CheckpointError) as info:
        Checkpointer(wider).load(path)
    msg = str(info.value)
    assert path in msg and "does not fit the model" in msg
    assert "backbone.0.weight: checkpoint (3, 4) vs model (6, 4)" in msg
    assert "backbone.1.moving_mean: checkpoint (3,) vs model (6,)" in msg


def test_optimizer_of_another_kind_is_reported(tmp_path):
    model, opt, _ = _trained()
    Checkpointer(model, str(tmp_path), optimizer=opt).save("model_0001")
    m2 = ToyModel()
    ck = Checkpointer(m2, str(tmp_path), optimizer=nn.Adam(m2.trainable_params(), 0.1))
    with pytest.raises(CheckpointError, match="Optimizer state .* does not fit the optimizer \\(Adam\\)"):
        ck.resume_or_load("", resume=True)


def test_bad_files_name_their_path(tmp_path):
    bogus = tmp_path / "notes.ckpt"
    bogus.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{bogus} is not a readable MindSpore checkpoint"):
        read_checkpoint(str(bogus))
    with pytest.raises(CheckpointError, match="Checkpoint file not found: .*missing.ckpt"):
        Checkpointer(ToyModel()).load(str(tmp_path / "missing.ckpt"))


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    model, opt, _ = _trained()
    ck = Checkpointer(model, str(tmp_path), optimizer=opt)
    path = ck.save("model_final")
    original = model.backbone[0].weight.asnumpy().copy()
    model.backbone[0].weight.set_data(ms.Tensor(original + 1.0))

    def broken_save(obj, name, **kwargs):
        with open(name, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.ms, "save_checkpoint", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save("model_final")
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.ckpt"]
    tensors, _ = read_checkpoint(path)
    np.testing.assert_array_equal(tensors["backbone.0.weight"].asnumpy(), original)


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    import fastreid_ms
    import mindspore as ms
    from mindspore import nn
    from test_checkpoint import ToyModel
    from fastreid_ms.utils.checkpoint import Checkpointer
    model = ToyModel()
    ck = Checkpointer(model, {out!r}, optimizer=nn.Momentum(model.trainable_params(), 0.1, 0.9))
    ck.save("model_0001", epoch=1)
    ck.save("model_final", epoch=1)        # complete; now the last checkpoint
    ck.save("model_0002", epoch=2)         # third save: paused by the hook, then killed
""")


def test_kill_during_write_leaves_previous_checkpoint_loadable(tmp_path):
    out = tmp_path / "out"
    script = _KILL_SCRIPT.format(repo=REPO, tests=os.path.join(REPO, "tests"), out=str(out))
    env = dict(os.environ, **{PAUSE_ENV: "3"})
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if PAUSE_MESSAGE in line:
                break
        assert any(PAUSE_MESSAGE in l for l in lines), "".join(lines[-30:])
        # The temporary file of model_0002 is complete on disk but not renamed yet.
        assert any(n.startswith(".model_0002.ckpt.") for n in os.listdir(out))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert not (out / "model_0002.ckpt").exists()
    ck = Checkpointer(ToyModel(), str(out))
    assert ck.get_checkpoint_file() == str(out / "model_final.ckpt")
    assert ck.load(ck.get_checkpoint_file())["epoch"] == 1
    assert Checkpointer(ToyModel()).load(str(out / "model_0001.ckpt"))["epoch"] == 1
