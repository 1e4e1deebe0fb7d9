"""The recipe configs are the seed's runs. Every expected value here is written from the seed's
code (the MindSpore model zoo's research/cv/AlignedReID++), not read back from our configs:

* scripts/run_train_ascend.sh: 8 NPUs, train.py defaults (num_instances 8); src/samplers.py and
  src/dataset_loader.py: batch 32 per device (drop_remainder), ``pids_per_npu = num_ids //
  rank_size``, ``samples_per_npu = pids_per_npu * num_instances``; 300 epochs.
* scripts/run_singletrain_ascend.sh: one device, ``--num_instances=4``.
* train.py: ``Momentum(net.trainable_params(), lr, 0.85, 5e-4, 1.0, True)``; MindSpore's
  default decay filter decays a parameter unless its name contains 'beta' or 'gamma'.
* src/ResNet.py: ``end_point = _fc(2048, num_classes)`` = N(0, 0.01) weight, bias 0; the local
  ``nn.Conv2d(2048, 128, 1, has_bias=True)`` with MindSpore 1.3's 'normal' = N(0, 0.01), bias 0.
* train.py: ``Model(grad_net)`` with no AMP and loss scale 1: float32.
"""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import fastreid_ms  # noqa: F401

from fastreid_ms.config import get_cfg
from fastreid_ms.data import build as data_build
from fastreid_ms.engine.recipe import log_recipe, recipe_report
from fastreid_ms.engine.train_step import resolve_amp_level
from fastreid_ms.modeling import build_model
from fastreid_ms.solver import build_lr_scheduler, build_optimizer

pytestmark = pytest.mark.usefixtures("pynative")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKET_8 = os.path.join(REPO, "configs", "Market1501", "alignedpp_R50.yml")
MARKET_1 = os.path.join(REPO, "configs", "Market1501", "alignedpp_R50_1card.yml")
MARKET_TRAIN_IDS = 751
MARKET_TRAIN_IMAGES = 12936


def seed_iterations(num_ids, rank_size, num_instances, batch_per_device=32):
    """The seed's iterations per epoch: its sampler yields samples_per_npu indices, batched by
    32 with drop_remainder."""
    pids_per_npu = num_ids // rank_size
    samples_per_npu = pids_per_npu * num_instances
    return samples_per_npu // batch_per_device


def recipe(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    return cfg


def market_sized_items():
    """(path, pid, camid) for 751 ids, 12,936 images (17 or 18 per id), as Market1501's train."""
    items = []
    for i in range(MARKET_TRAIN_IMAGES):
        pid = i % MARKET_TRAIN_IDS
        items.append((f"{pid:04d}_c{1 + i % 6}s1_{i:06d}_00.jpg", pid, i % 6))
    return items


def loader_iterations(cfg, monkeypatch, rank, world_size):
    monkeypatch.setattr(data_build, "_combined_train_items", lambda cfg: market_sized_items())
    loader = data_build.build_reid_train_loader(cfg, rank=rank, world_size=world_size)
    return loader


@pytest.mark.parametrize("path,devices,instances,iters,updates", [
    (MARKET_8, 8, 8, 23, 6900),    # the evaluated checkpoint is resnet50-300_23.ckpt
    (MARKET_1, 1, 4, 93, 27900),
])
def test_iterations_and_updates_are_the_seeds(path, devices, instances, iters, updates,
                                              monkeypatch):
    assert seed_iterations(MARKET_TRAIN_IDS, devices, instances) == iters
    cfg = recipe(path)
    for rank in range(devices):
        loader = loader_iterations(cfg, monkeypatch, rank, devices)
        assert loader.batch_size == 32  # per device, as the seed's batch(32)
        assert len(loader) == iters
        batch = loader.epoch_indices(0)[:32]
        pids = [market_sized_items()[i][1] for i in batch]
        assert len(set(pids)) == 32 // instances and all(pids.count(p) == instances for p in pids)
    assert len(build_lr_scheduler(cfg, iters)) == updates
    table, differences = recipe_report(cfg, MARKET_TRAIN_IDS, devices, iters)
    assert differences == []
    assert f"{updates:,}" in table and "32 (" in table


def test_8_device_recipe_on_one_device_runs_the_config_and_says_how_it_differs(monkeypatch,
                                                                                caplog):
    cfg = recipe(MARKET_8)
    loader = loader_iterations(cfg, monkeypatch, 0, 1)
    # The config's global batch on one device: 256 images (32 ids x 8), still 23 iterations.
    assert loader.batch_size == 256 and len(loader) == 23
    with caplog.at_level(logging.INFO, logger="fastreid_ms"):
        differences = log_recipe(logging.getLogger("fastreid_ms"), cfg, MARKET_TRAIN_IDS, 1, 23)
    assert "devices: this run 1, recipe 8" in differences
    assert "per-device batch (P x K): this run 256 (32 x 8), recipe 32 (4 x 8)" in differences
    assert not any(d.startswith(("updates", "iterations", "global batch")) for d in differences)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "8 NPUs" in warnings[0] and "256 images per device" in warnings[0]
    info = "\n".join(r.getMessage() for r in caplog.records)
    assert "6,900" in info and "global batch" in info


def test_weight_decay_per_parameter_is_the_seeds():
    cfg = recipe(MARKET_8)
    cfg.MODEL.HEADS.NUM_CLASSES = MARKET_TRAIN_IDS
    model = build_model(cfg)
    opt = build_optimizer(cfg, model, 23)
    names = [p.name for p in opt.parameters]
    assert set(names) == {p.name for p in model.trainable_params()}
    decays = dict(zip(names, opt.group_weight_decay))
    undecayed = 0
    for name, wd in decays.items():
        expected = 0.0 if ("beta" in name or "gamma" in name) else 5e-4
        assert wd == pytest.approx(expected, abs=1e-12), name
        undecayed += expected == 0.0
    # every BN of the ResNet-50 (53) and the local branch's BN: gamma and beta
    assert undecayed == 2 * 54
    assert decays["heads.classifier.bias"] == pytest.approx(5e-4)
    assert decays["heads.local_conv.bias"] == pytest.approx(5e-4)
    # One key away: the previous grouping decayed the norms too.
    cfg.SOLVER.WEIGHT_DECAY_NORM = 5e-4
    assert set(build_optimizer(cfg, model, 23).group_weight_decay) == {5e-4}


def test_initial_weights_of_classifier_and_local_conv_are_the_seeds():
    cfg = recipe(MARKET_8)
    cfg.MODEL.HEADS.NUM_CLASSES = MARKET_TRAIN_IDS
    heads = build_model(cfg).heads
    cls_w, local_w = heads.classifier.weight.asnumpy(), heads.local_conv.weight.asnumpy()
    assert cls_w.shape == (751, 2048) and local_w.shape == (128, 2048, 1, 1)
    # 1.5M and 262k draws: the sample std is within 1 % of the true one.
    assert cls_w.std() == pytest.approx(0.01, rel=0.01) and abs(cls_w.mean()) < 1e-4
    assert local_w.std() == pytest.approx(0.01, rel=0.01) and abs(local_w.mean()) < 1e-4
    assert not heads.classifier.bias.asnumpy().any() and not heads.local_conv.bias.asnumpy().any()
    # The previous initialisation, two keys away: N(0, 0.001) and He normal fan_out (128).
    cfg.MODEL.HEADS.CLS_INIT_STD = 0.001
    cfg.MODEL.HEADS.LOCAL_CONV_INIT = "kaiming"
    heads = build_model(cfg).heads
    assert heads.classifier.weight.asnumpy().std() == pytest.approx(0.001, rel=0.01)
    assert heads.local_conv.weight.asnumpy().std() == pytest.approx(np.sqrt(2 / 128), rel=0.02)


def test_recipe_precision_is_float32_on_every_device():
    cfg = recipe(MARKET_8)
    for device in ("CPU", "GPU", "Ascend"):
        assert resolve_amp_level(cfg.SOLVER.AMP.LEVEL, device)[0] == "O0"
    assert resolve_amp_level("auto", "Ascend")[0] == "O2"  # the option, one key away


def test_recipe_starts_from_the_seeds_imagenet_checkpoint_with_its_numerics():
    for path in (MARKET_8, MARKET_1):
        b = recipe(path).MODEL.BACKBONE
        assert b.PRETRAIN and b.CONVENTION == "modelzoo" and b.DEPTH == 50
        assert os.path.basename(b.PRETRAIN_PATH) == (
            "resnet50_ascend_v130_imagenet2012_official_cv_bs256_top1acc76.97__top5acc_93.44.ckpt")
    r = recipe(MARKET_8).INPUT.REA
    assert (r.MODE, r.PROB, list(r.AREA)) == ("seed", 0.5, [0.02, 0.4])
    assert list(r.ASPECT) == pytest.approx([0.3, 1 / 0.3]) and list(r.VALUE) == [0.4914, 0.4822,
                                                                                 0.4465]


# ----------------------------------------------------------------- the mission's command
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
SEED_CKPT = "resnet50_ascend_v130_imagenet2012_official_cv_bs256_top1acc76.97__top5acc_93.44.ckpt"


def test_mission_command_without_the_checkpoint_stops_before_building_anything(tmp_path):
    """``python tools/train_net.py --config-file configs/Market1501/alignedpp_R50.yml`` from a
    folder without the ImageNet file (nor a dataset): the ImageNet message, exit code 2, and
    nothing was built (the missing dataset is never reached)."""
    proc = subprocess.run([sys.executable, TRAIN_NET, "--config-file", MARKET_8], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("train_net.py: error: MODEL.BACKBONE.PRETRAIN is True")
    assert str(tmp_path / "pretrained" / SEED_CKPT) in err
    assert SEED_CKPT in err and "MODEL.BACKBONE.PRETRAIN False" in err
    assert "Train loader" not in proc.stdout and "Market1501" not in err


@pytest.mark.slow
def test_mission_command_with_a_zoo_checkpoint_starts_and_logs_the_recipe(tmp_path):
    """With a model-zoo-format ResNet-50 at the default path and a Market1501 folder, the
    command loads the weights and its first lines state the run next to the seed's."""
    from _builders import market_name, write_three_splits
    from test_modelzoo_resnet import write_zoo_checkpoint, zoo_checkpoint_arrays
    os.makedirs(tmp_path / "pretrained")
    write_zoo_checkpoint(tmp_path / "pretrained" / SEED_CKPT, zoo_checkpoint_arrays())
    write_three_splits(str(tmp_path / "datasets" / "Market-1501-v15.09.15"),
                       [market_name(pid, 1 + n % 2, n) for pid in range(1, 41) for n in range(2)],
                       [market_name(pid, 1, 0) for pid in range(100, 104)],
                       [market_name(pid, 2, 1) for pid in range(100, 104)], height=32, width=16)
    proc = subprocess.Popen([sys.executable, TRAIN_NET, "--config-file", MARKET_8,
                             "DATALOADER.NUM_WORKERS", "1"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Starting training" in line:
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    log = "".join(lines)
    assert "Starting training" in log, log[-3000:]
    assert f"ImageNet weights from pretrained/{SEED_CKPT}" in log
    assert "| loaded " in log and "| missing (kept at init)    |       0" in log
    assert "Set MODEL.BACKBONE.CONVENTION" not in log  # model-zoo weights, model-zoo backbone
    # The run next to the seed's: 40 ids on one device in 256-image batches.
    table = log[log.index("Training run (40 identities)"):]
    assert "| devices" in table and "recipe: model zoo AlignedReID++, 8 NPUs" in table
    assert "devices: this run 1, recipe 8" in log
    assert "SOLVER.AMP.LEVEL O0" in log


def test_show_recipe_tool_prints_the_table_for_another_launch(capsys):
    from _builders import load_script
    tool = load_script("tools/show_recipe.py")
    duke = os.path.join(REPO, "configs", "DukeMTMC", "alignedpp_R50.yml")
    assert tool.main(["--config-file", duke, "--devices", "4"]) == 0
    out = capsys.readouterr().out
    # 702 ids on 4 devices in 64-image batches (8 ids x 8): 175 ids each, 21 iterations.
    assert "on 4 device(s), 702 training identities" in out
    assert "| iterations per epoch     | 21 " in out and "6,300" in out
    assert "devices: this run 4, recipe 8" in out and "64 (8 x 8)" in out
