"""DefaultTrainer and tools/train_net.py.

In-process tests use a toy model and in-memory loaders (overridden builders); the slow
tests run tools/train_net.py for real with AlignedReID++ (the demo config shrunk) on the
synthetic dataset: a short run, and a run killed mid-epoch and during a checkpoint write,
resumed each time. --eval-only with re-ranking is in test_training_quality.py. Also: a
missing dataset and config errors.
"""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms
from mindspore import nn, ops

from fastreid_ms.config import get_cfg
from fastreid_ms.engine import DefaultTrainer, NonFiniteLossError
from fastreid_ms.solver import build_lr_scheduler
from fastreid_ms.utils.checkpoint import PAUSE_ENV, PAUSE_MESSAGE, Checkpointer, read_checkpoint
from fastreid_ms.utils.events import read_metrics

from _builders import reference_distance, slow_rank

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")


# ----------------------------------------------------------------------------- toy pieces
class ToyReid(nn.Cell):
    """conv -> BN -> pool -> heads.classifier; train: {"loss_cls"}; eval: {"global"}.
    (No ReLU: on CPU it maps NaN to 0, which would hide an injected NaN.)"""

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, has_bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.heads = nn.SequentialCell()
        self.heads.classifier = nn.Dense(8, num_classes)
        self.classifier = self.heads.classifier

    def construct(self, images, targets=None):
        feat = self.bn(self.conv(images)).mean(axis=(2, 3))
        if not self.training:
            return {"global": feat}
        return {"loss_cls": ops.cross_entropy(self.classifier(feat), targets)}


class ToyTrainLoader:
    """2 iterations per epoch of 8 images of 4 ids; ``nan_at`` (1-based global batch) holds NaN."""

    num_classes = 4
    iters_per_epoch = 2

    def __init__(self, nan_at=None):
        self.nan_at = nan_at
        self.epoch = 0
        self.served = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.iters_per_epoch

    def __iter__(self):
        rng = np.random.default_rng(self.epoch)
        for _ in range(self.iters_per_epoch):
            self.served += 1
            pids = np.arange(8, dtype=np.int32) % 4
            images = (rng.standard_normal((8, 3, 12, 8)) + pids[:, None, None, None]).astype(np.float32)
            if self.served == self.nan_at:
                images[0, 0, 0, 0] = np.nan
            yield ms.Tensor(images), ms.Tensor(pids), ms.Tensor(np.zeros(8, np.int32))


class ToyTestLoader:
    def __init__(self):
        rng = np.random.default_rng(9)
        self.pids = np.array([0, 1, 2, 3] + [0, 1, 2, 3] * 2, np.int64)
        self.camids = np.array([0] * 4 + [1] * 8, np.int64)
        self.images = (rng.standard_normal((12, 3, 12, 8)) +
                       self.pids[:, None, None, None]).astype(np.float32)
        self.num_samples = 12

    def __len__(self):
        return 2

    def __iter__(self):
        for s in (slice(0, 6), slice(6, 12)):
            yield ms.Tensor(self.images[s]), self.pids[s], self.camids[s]


def _toy_trainer_class(nan_at=None):
    class ToyTrainer(DefaultTrainer):
        @classmethod
        def build_train_loader(cls, cfg):
            return ToyTrainLoader(nan_at)

        @classmethod
        def build_test_loader(cls, cfg, dataset_name):
            return ToyTestLoader(), 4

        @classmethod
        def build_model(cls, cfg):
            return ToyReid(cfg.MODEL.HEADS.NUM_CLASSES)
    return ToyTrainer


def _toy_cfg(out, **solver):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(out)
    cfg.DATASETS.TESTS = ["Toy"]
    cfg.SOLVER.MAX_EPOCH = 3
    cfg.SOLVER.WARMUP_EPOCHS = 1
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.IMS_PER_BATCH = 8
    cfg.SOLVER.CHECKPOINT_PERIOD = 1
    cfg.SOLVER.LOG_PERIOD = 1
    cfg.TEST.EVAL_PERIOD = 2
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    cfg.freeze()
    return cfg


def test_toy_training_checkpoints_metrics_and_lr_position(tmp_path):
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = _toy_cfg(tmp_path)
    trainer = _toy_trainer_class()(cfg)
    assert trainer.cfg.MODEL.HEADS.NUM_CLASSES == 4
    trainer.resume_or_load(resume=True)  # nothing to resume: starts at epoch 0
    results = trainer.train()
    # The final results are those of the trained model, computed here independently:
    # euclidean distances of its eval features, ranked by a slow loop.
    test = ToyTestLoader()
    trainer.model.set_train(False)
    feats = trainer.model(ms.Tensor(test.images))["global"].asnumpy()
    ref = slow_rank(reference_distance(feats[:4], feats[4:]), test.pids[:4], test.pids[4:],
                    test.camids[:4], test.camids[4:], max_rank=8)
    assert set(results) == {"Toy"}
    for key, want in zip(("Rank-1", "Rank-5", "mAP", "mINP"), (ref[0][0], ref[0][4], ref[1], ref[2])):
        assert results["Toy"][key] == pytest.approx(100 * want, abs=1e-4), key
    files = set(os.listdir(tmp_path))
    assert {"model_0001.ckpt", "model_0002.ckpt", "model_final.ckpt", "model_best.ckpt",
            "metrics.json", "last_checkpoint"} <= files
    assert "model_0003.ckpt" not in files  # the last epoch is model_final
    assert open(tmp_path / "last_checkpoint").read().strip() == "model_final.ckpt"
    assert int(trainer.optimizer.global_step.asnumpy()[0]) == 6
    records = read_metrics(str(tmp_path / "metrics.json"))
    train = [r for r in records if "total_loss" in r]
    assert [r["iteration"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in train] == [1, 1, 2, 2, 3, 3]
    table = build_lr_scheduler(cfg, 2)
    for r in train:  # the lr logged is the one the step used
        assert r["lr"] == pytest.approx(table[r["iteration"] - 1], rel=1e-6)
    evals = [r for r in records if r.get("dataset") == "Toy"]
    assert [r["epoch"] for r in evals] == [2, 3]
    assert {"Rank-1", "mAP", "mINP"} <= set(evals[0])
    _, meta = read_checkpoint(str(tmp_path / "model_best.ckpt"))
    best = max(evals, key=lambda r: (r["Rank-1"] + r["mAP"]) / 2)
    assert meta["best_epoch"] == best["epoch"]
    assert meta["best_score"] == pytest.approx((best["Rank-1"] + best["mAP"]) / 2)

    # Resuming a finished run does nothing and keeps the state: no step, no file written.
    before = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)}
    again = _toy_trainer_class()(cfg)
    again.resume_or_load(resume=True)
    assert again.start_epoch == 3 and int(again.optimizer.global_step.asnumpy()[0]) == 6
    loaded = {p.name: p.asnumpy().copy() for p in again.model.get_parameters()}
    final, _ = read_checkpoint(str(tmp_path / "model_final.ckpt"))
    for name, value in loaded.items():
        np.testing.assert_array_equal(value, final[name].asnumpy(), err_msg=name)
    assert again.train() is None  # nothing evaluated
    assert int(again.optimizer.global_step.asnumpy()[0]) == 6
    for p in again.model.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), loaded[p.name], err_msg=p.name)
    assert {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)} == before


def test_injected_nan_stops_with_clear_error_and_keeps_checkpoint(tmp_path):
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = _toy_cfg(tmp_path, MAX_EPOCH=4)
    trainer = _toy_trainer_class(nan_at=3)(cfg)  # batch 3 = epoch 2, first iteration
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    msg = str(info.value)
    assert "iteration 3 (epoch 2)" in msg and "loss_cls = nan" in msg
    assert str(tmp_path / "model_0001.ckpt") in msg
    assert set(os.listdir(tmp_path)) >= {"model_0001.ckpt"}
    assert "model_0002.ckpt" not in os.listdir(tmp_path)
    meta = Checkpointer(ToyReid(4)).load(str(tmp_path / "model_0001.ckpt"))
    assert meta["epoch"] == 1 and meta["iteration"] == 2
    last = read_metrics(str(tmp_path / "metrics.json"))[-1]
    assert last["iteration"] == 3 and "loss_cls = nan" in last["error"]


# ----------------------------------------------------------------------------- train_net.py
DEMO = os.path.join(REPO, "configs", "Demo", "alignedpp_demo.yml")


def _tiny_args(out, data_root, extra=()):
    """AlignedReID++ (the demo config: ResNet-18 of width 16, last stride 1, the seed's
    losses, erasing, decay and float32) shrunk: 16 train ids, 64x32 inputs (4 parts), 6
    epochs of 4 iterations, evaluation after epochs 3 and 6."""
    return [
        "--config-file", DEMO,
        "OUTPUT_DIR", str(out), "DATASETS.ROOT", str(data_root),
        "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "16", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "16",
        "DATASETS.SYNTHETIC.IMAGES_PER_ID", "8", "DATASETS.SYNTHETIC.HEIGHT", "64",
        "DATASETS.SYNTHETIC.WIDTH", "32",
        "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]",
        "SOLVER.IMS_PER_BATCH", "16", "DATALOADER.NUM_INSTANCE", "4", "DATALOADER.NUM_WORKERS", "1",
        "SOLVER.MAX_EPOCH", "6", "SOLVER.WARMUP_EPOCHS", "1", "SOLVER.BASE_LR", "0.02",
        "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "3", "SOLVER.LOG_PERIOD", "1",
        "TEST.IMS_PER_BATCH", "64", "TEST.RERANK.ENABLED", "False", *extra]


def _train_net(flags, opts, env=None, timeout=600):
    return subprocess.run([sys.executable, TRAIN_NET, *flags, *opts], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _run_until(args, marker, env=None):
    """Start train_net.py and SIGKILL it on the first output line containing ``marker``;
    returns the lines it printed."""
    proc = subprocess.Popen([sys.executable, TRAIN_NET, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert any(marker in line for line in lines), "".join(lines[-40:])
    return lines


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted 6-epoch AlignedReID++ run of tools/train_net.py (shared by the slow
    tests)."""
    root = tmp_path_factory.mktemp("train_net")
    out = root / "full"
    proc = _train_net([], _tiny_args(out, root / "data"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root, out, proc


def _evaluations(out):
    return [r for r in read_metrics(str(out / "metrics.json")) if r.get("dataset") == "Synthetic"]


@pytest.mark.slow
def test_alignedreid_run_writes_everything_and_trains_the_local_branch(full_run):
    root, out, proc = full_run
    files = set(os.listdir(out))
    assert {"config.yaml", "log.txt", "metrics.json", "last_checkpoint", "model_best.ckpt",
            "model_final.ckpt"} <= files
    assert {f"model_{e:04d}.ckpt" for e in range(1, 6)} <= files
    records = read_metrics(str(out / "metrics.json"))
    train = [r for r in records if "total_loss" in r]
    assert [r["iteration"] for r in train] == list(range(1, 25))
    for r in train:  # the three AlignedReID++ losses, each logged, summing to the total
        assert set(r) >= {"loss_cls", "loss_triplet", "loss_local"}
        assert r["total_loss"] == pytest.approx(r["loss_cls"] + r["loss_triplet"] + r["loss_local"])
        assert r["loss_local"] > 0 and r["loss_scale"] == 1.0  # float32 (O0): no scaling
    assert [r["epoch"] for r in _evaluations(out)] == [3, 6]
    log = (out / "log.txt").read_text()
    assert "SOLVER.AMP.LEVEL O0 on CPU" in log and "AlignedReIDppHead" in (out / "config.yaml").read_text()
    assert "images/s" in log and "ETA" in log and "MODEL.BACKBONE.PRETRAIN False" in log
    # The local branch learns only through the local loss: its BN's gamma / beta (no weight
    # decay in the seed's recipe) leave their initial 1 / 0 only if that loss reaches them
    # (measured: mean moves of 1.2e-3 and 7.8e-4 in these 24 steps; exactly 0 without it).
    final, _ = read_checkpoint(str(out / "model_final.ckpt"))
    gamma, beta = final["heads.local_bn.gamma"].asnumpy(), final["heads.local_bn.beta"].asnumpy()
    assert np.abs(gamma - 1).mean() > 1e-4 and np.abs(beta).mean() > 1e-4
    # The run ends with the evaluation table of the final model.
    tail = proc.stdout.strip().splitlines()[-4:]
    assert tail[0].startswith("[") and "Final evaluation (epoch 6, model_final.ckpt)" in tail[0]
    assert "Rank-1" in tail[1] and "mAP" in tail[1] and tail[3].startswith("| Synthetic")
    from fastreid_ms.config import get_cfg as fresh_cfg
    cfg = fresh_cfg()
    cfg.merge_from_file(str(out / "config.yaml"))
    assert cfg.SOLVER.MAX_EPOCH == 6 and cfg.MODEL.BACKBONE.BASE_WIDTH == 16


@pytest.mark.slow
def test_kill_during_an_epoch_and_a_checkpoint_write_then_resume_matches_uninterrupted(full_run):
    """kill -9 in the middle of epoch 3, --resume; kill -9 again while model_0005.ckpt is being
    written, --resume: the final weights, optimizer state and evaluations equal the
    uninterrupted run's."""
    root, full_out, _ = full_run
    out = root / "resumed"
    args = _tiny_args(out, root / "data")
    _run_until(args, "epoch 3/6  iter 2/4")
    assert (out / "last_checkpoint").read_text().strip() == "model_0002.ckpt"
    assert not (out / "model_0003.ckpt").exists()

    # Saves after resuming from epoch 2: model_best (evaluation after epoch 3), model_0003,
    # then model_0004, the third, during whose write the run is killed.
    env = dict(os.environ, **{PAUSE_ENV: "3"})
    lines = _run_until(["--resume", *args], PAUSE_MESSAGE, env=env)
    assert any("Resumed after epoch 2 (iteration 8, learning-rate position 8)" in l for l in lines)
    assert not (out / "model_0004.ckpt").exists()
    assert (out / "last_checkpoint").read_text().strip() == "model_0003.ckpt"

    resumed = _train_net(["--resume"], args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Resumed after epoch 3 (iteration 12, learning-rate position 12)" in resumed.stdout
    a, meta_a = read_checkpoint(str(full_out / "model_final.ckpt"))
    b, meta_b = read_checkpoint(str(out / "model_final.ckpt"))
    assert (meta_b["epoch"], meta_b["iteration"]) == (meta_a["epoch"], meta_a["iteration"]) == (6, 24)
    assert int(b["optimizer.global_step"].asnumpy()[0]) == 24
    assert set(a) == set(b)
    assert len([k for k in a if k.startswith("optimizer.")]) > 10
    for key in a:
        np.testing.assert_allclose(b[key].asnumpy(), a[key].asnumpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    full_evals, resumed_evals = _evaluations(full_out), _evaluations(out)
    assert [r["epoch"] for r in resumed_evals] == [r["epoch"] for r in full_evals] == [3, 6]
    for got, want in zip(resumed_evals, full_evals):
        for key in ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP"):
            assert got[key] == pytest.approx(want[key], abs=1e-6), key


def test_missing_dataset_is_one_message_and_exit_code_2(tmp_path):
    missing = tmp_path / "nowhere"
    proc = _train_net([], ["OUTPUT_DIR", str(tmp_path / "out"), "DATASETS.ROOT", str(missing),
                           "MODEL.BACKBONE.DEPTH", "18"], timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    err = proc.stderr.strip()
    first = next(line for line in err.splitlines() if line.startswith("train_net.py: error:"))
    assert str(missing) in first
    # the message ends with the expected folder layout, kept on its own lines
    assert "bounding_box_train" in err and len(err.splitlines()) > 3


def test_bad_config_key_and_eval_without_weights_exit_2(tmp_path):
    proc = _train_net([], ["OUTPUT_DIR", str(tmp_path), "SOLVER.BASE_LRR", "0.1"], timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "SOLVER.BASE_LRR" in proc.stderr and "SOLVER.BASE_LR" in proc.stderr
    proc = _train_net(["--eval-only"], ["OUTPUT_DIR", str(tmp_path)], timeout=300)
    assert proc.returncode == 2 and "MODEL.WEIGHTS" in proc.stderr.splitlines()[-1]


def test_help_needs_no_dataset():
    proc = subprocess.run([sys.executable, TRAIN_NET, "--help"], cwd="/", capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--eval-only" in proc.stdout and "--resume" in proc.stdout
