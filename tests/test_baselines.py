"""The strong baselines as configs (BoT, AGW, SBS; fast-reid's recipes): each demo config
trains for one iteration and evaluates through tools/train_net.py, the Market1501 recipe
configs state fast-reid's recipe and build, and the exported eval graph of each new head /
backbone option matches the model (MINDIR through mindspore.load, ONNX through onnxruntime).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms
from mindspore import nn

from fastreid_ms.config import get_cfg
from _builders import randomize_bn_stats  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
DEMOS = {"bot": "configs/Demo/bot_demo.yml", "agw": "configs/Demo/agw_demo.yml",
         "sbs": "configs/Demo/sbs_demo.yml"}


def _cfg(path, opts=()):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, path))
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_demo_config_trains_one_iteration_and_evaluates(tmp_path, name):
    out = tmp_path / name
    args = [sys.executable, TRAIN_NET, "--config-file", os.path.join(REPO, DEMOS[name]),
            "OUTPUT_DIR", str(out), "DATASETS.ROOT", str(tmp_path / "data"),
            "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "8", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "6",
            "DATASETS.SYNTHETIC.IMAGES_PER_ID", "4", "DATASETS.SYNTHETIC.HEIGHT", "32",
            "DATASETS.SYNTHETIC.WIDTH", "16", "INPUT.SIZE_TRAIN", "[32, 16]",
            "INPUT.SIZE_TEST", "[32, 16]", "SOLVER.IMS_PER_BATCH", "8",
            "DATALOADER.NUM_INSTANCE", "2", "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "1", "SOLVER.WARMUP_EPOCHS", "0",
            "TEST.IMS_PER_BATCH", "32"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "metrics.json", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if "total_loss" in r]
    evals = [r for r in records if r.get("dataset") == "Synthetic" and "Rank-1" in r]
    assert train and np.isfinite(train[-1]["total_loss"])
    assert evals and 0.0 <= evals[-1]["mAP"] <= 100.0
    assert (out / "model_final.ckpt").is_file()


def test_recipe_configs_state_fast_reids_recipes():
    bot = _cfg("configs/Market1501/bagtricks_R50.yml")
    s, h, b = bot.SOLVER, bot.MODEL.HEADS, bot.MODEL.BACKBONE
    assert (b.DEPTH, b.LAST_STRIDE, b.PRETRAIN, b.WITH_IBN, b.WITH_NL) == (50, 1, True, False, False)
    assert (h.NAME, h.WITH_BNNECK, h.POOL_LAYER, h.NECK_FEAT, h.TRIPLET_FEAT) == \
        ("EmbeddingHead", True, "GlobalAvgPool", "after", "before")
    assert list(bot.MODEL.LOSSES.NAME) == ["CrossEntropyLoss", "TripletLoss"]
    assert (bot.MODEL.LOSSES.CE.EPSILON, bot.MODEL.LOSSES.TRI.MARGIN, bot.MODEL.LOSSES.TRI.HARD_MINING) == (0.1, 0.3, True)
    assert (s.OPT, s.BASE_LR, s.WEIGHT_DECAY, s.IMS_PER_BATCH, s.MAX_EPOCH) == ("Adam", 0.00035, 0.0005, 64, 120)
    assert (s.SCHED, list(s.STEPS), s.WARMUP_ITERS, s.WARMUP_FACTOR, s.ITERS_PER_EPOCH) == \
        ("MultiStepLR", [49, 99], 2000, 0.1, 202)
    assert bot.DATALOADER.NUM_INSTANCE == 4 and bot.INPUT.SIZE_TRAIN == [256, 128]
    assert bot.INPUT.PADDING.ENABLED and bot.INPUT.REA.ENABLED and bot.INPUT.FLIP.ENABLED
    assert not bot.INPUT.TRANSLATE.ENABLED and bot.TEST.METRIC == "cosine"

    agw = _cfg("configs/Market1501/AGW_R50.yml")
    assert agw.MODEL.BACKBONE.WITH_NL and list(agw.MODEL.BACKBONE.NL_LAYERS) == [0, 2, 3, 0]
    assert agw.MODEL.HEADS.POOL_LAYER == "GeneralizedMeanPooling"
    assert (agw.MODEL.LOSSES.TRI.MARGIN, agw.MODEL.LOSSES.TRI.HARD_MINING) == (0.0, False)

    sbs = _cfg("configs/Market1501/sbs_R50.yml")
    s = sbs.SOLVER
    assert (sbs.MODEL.HEADS.POOL_LAYER, sbs.MODEL.HEADS.CLS_LAYER, sbs.MODEL.HEADS.TRIPLET_FEAT) == \
        ("GeneralizedMeanPoolingP", "CircleSoftmax", "after")
    assert list(sbs.MODEL.LOSSES.NAME) == ["CircleSoftmaxLoss", "TripletLoss"]
    assert (sbs.MODEL.LOSSES.CIRCLE_SOFTMAX.GAMMA, sbs.MODEL.LOSSES.CIRCLE_SOFTMAX.MARGIN) == (64.0, 0.35)
    assert (s.SCHED, s.MAX_EPOCH, s.DELAY_EPOCHS, s.ETA_MIN_LR, s.FREEZE_ITERS) == \
        ("CosineAnnealingLR", 60, 30, 7e-7, 1000)
    assert list(sbs.MODEL.FREEZE_LAYERS) == ["backbone"] and sbs.DATALOADER.NUM_INSTANCE == 16
    assert sbs.INPUT.SIZE_TRAIN == [384, 128] and sbs.INPUT.AUTOAUG.ENABLED and sbs.INPUT.AUTOAUG.PROB == 0.1
    for name in ("bagtricks", "AGW", "sbs"):
        ibn = _cfg(f"configs/Market1501/{name}_R50-ibn.yml")
        assert ibn.MODEL.BACKBONE.WITH_IBN and ibn.MODEL.BACKBONE.PRETRAIN_PATH.endswith("resnet50_ibn_a-d9d0bb7b.npz")


# ----------------------------------------------------------------------------- export parity
HEIGHT, WIDTH = 32, 16
TINY = ["MODEL.BACKBONE.BASE_WIDTH", 8, "MODEL.BACKBONE.FEAT_DIM", 64, "MODEL.HEADS.NUM_CLASSES", 5,
        "INPUT.SIZE_TEST", [HEIGHT, WIDTH], "INPUT.SIZE_TRAIN", [HEIGHT, WIDTH]]
EXPORTED = {"bot": (DEMOS["bot"], []), "agw": (DEMOS["agw"], []),
            "sbs_ibn": (DEMOS["sbs"], ["MODEL.BACKBONE.WITH_IBN", True])}


@pytest.fixture(scope="module", params=sorted(EXPORTED))
def exported_model(request):
    from fastreid_ms.modeling import build_model
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    path, extra = EXPORTED[request.param]
    model = build_model(_cfg(path, TINY + extra))
    randomize_bn_stats(model)
    rng = np.random.RandomState(1)
    for name, p in model.parameters_and_names():
        # Non-local blocks made non-trivial (their output BN starts at 0); small 1x1 weights, as
        # the block's response grows with the cube of its input.
        if name.startswith("backbone.nl_layer") and name.endswith(("W.1.gamma", "W.1.beta")):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.0, p.shape).astype(np.float32)))
        elif name.startswith("backbone.nl_layer") and name.endswith("weight"):
            p.set_data(ms.Tensor(rng.randn(*p.shape).astype(np.float32) * 0.05))
        if name.endswith(".IN.gamma"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
    model.set_train(False)
    images = np.random.RandomState(0).rand(2, 3, HEIGHT, WIDTH).astype(np.float32)
    reference = model(ms.Tensor(images))["global"].asnumpy()
    return request.param, model, images, reference


def test_export_parity_mindir_and_onnx(tmp_path, exported_model):
    from fastreid_ms.modeling.export_wrapper import export_inference_model
    name, model, images, reference = exported_model
    assert reference.shape == (2, 64) and np.isfinite(reference).all()
    path, names = export_inference_model(model, "MINDIR", str(tmp_path / name), (HEIGHT, WIDTH),
                                         batch_size=2)
    assert names == ("global",)
    out = nn.GraphCell(ms.load(path))(ms.Tensor(images))
    np.testing.assert_allclose(out[0].asnumpy(), reference, rtol=1e-5, atol=1e-5)
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'test' extra")
    path, _ = export_inference_model(model, "ONNX", str(tmp_path / name), (HEIGHT, WIDTH), batch_size=2)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"images": images})[0]
    assert float(np.abs(got - reference).max() / np.abs(reference).max()) <= 1e-5


@pytest.mark.parametrize("config", ["bagtricks_R50-ibn", "AGW_R50", "sbs_R50-ibn"])
def test_recipe_configs_build_and_extract(config, pynative):
    """The Market1501 recipe configs build their model (a narrow ResNet-50 here) and extract a
    feature; training them needs Market1501 and the ImageNet weights. (The other three differ
    from these by MODEL.BACKBONE.WITH_IBN only.)"""
    from fastreid_ms.modeling import build_model
    image = ms.Tensor(np.random.RandomState(2).rand(1, 3, 64, 32).astype(np.float32))
    cfg = _cfg(f"configs/Market1501/{config}.yml",
               ["MODEL.BACKBONE.BASE_WIDTH", 4, "MODEL.BACKBONE.FEAT_DIM", 128,
                "MODEL.HEADS.NUM_CLASSES", 3])
    model = build_model(cfg)
    assert model.backbone.with_ibn == config.endswith("-ibn")
    assert model.backbone.with_nl == (not config.startswith("bagtricks"))
    model.set_train(False)
    assert model(image)["global"].shape == (1, 128)


# Every real-data recipe config of the strong baselines (core and projects/MGN), shrunk to a
# tiny ResNet-18 on the small synthetic data; the model, losses, optimizer, schedule options,
# freezing, AutoAugment and evaluator are the config's own.
RECIPES = ["configs/Market1501/bagtricks_R50.yml", "configs/Market1501/bagtricks_R50-ibn.yml",
           "configs/Market1501/AGW_R50.yml", "configs/Market1501/AGW_R50-ibn.yml",
           "configs/Market1501/sbs_R50.yml", "configs/Market1501/sbs_R50-ibn.yml",
           "projects/MGN/configs/Market1501/mgn_R50.yml",
           "projects/MGN/configs/Market1501/mgn_R50-ibn.yml",
           "projects/MGN/configs/DukeMTMC/mgn_R50.yml"]
_RECIPE_DRIVER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("train_net_tool", sys.argv[1])
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
jobs = json.loads(sys.argv[2])
print(json.dumps([tool.run(argv) for argv in jobs]))
"""


@pytest.mark.slow
def test_every_recipe_config_trains_one_iteration_and_evaluates(tmp_path):
    tiny = ["DATASETS.NAMES", '["Synthetic"]', "DATASETS.TESTS", '["Synthetic"]',
            "DATASETS.ROOT", str(tmp_path / "data"), "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "8",
            "DATASETS.SYNTHETIC.NUM_TEST_IDS", "6", "DATASETS.SYNTHETIC.IMAGES_PER_ID", "4",
            "DATASETS.SYNTHETIC.HEIGHT", "64", "DATASETS.SYNTHETIC.WIDTH", "32",
            "MODEL.MODE", "PYNATIVE", "MODEL.BACKBONE.DEPTH", "18",
            "MODEL.BACKBONE.BASE_WIDTH", "8", "MODEL.BACKBONE.FEAT_DIM", "64",
            "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.BACKBONE.NL_LAYERS", "[0, 1, 1, 0]",
            "SOLVER.AMP.LEVEL", "O0",
            "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]",
            "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_INSTANCE", "2",
            "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "1",
            "SOLVER.WARMUP_EPOCHS", "0", "SOLVER.WARMUP_ITERS", "0", "SOLVER.DELAY_EPOCHS", "0",
            "TEST.IMS_PER_BATCH", "32", "TEST.EVAL_PERIOD", "1", "RECIPE.NAME", '""']
    outs = [tmp_path / f"run{i}" for i in range(len(RECIPES))]
    jobs = [["--config-file", os.path.join(REPO, path), "OUTPUT_DIR", str(out)] + tiny
            for path, out in zip(RECIPES, outs)]
    proc = subprocess.run([sys.executable, "-c", _RECIPE_DRIVER, TRAIN_NET, json.dumps(jobs)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes == [0] * len(RECIPES), proc.stderr[-4000:]
    for path, out in zip(RECIPES, outs):
        with open(out / "metrics.json", encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        train = [r for r in records if "total_loss" in r]
        evals = [r for r in records if r.get("dataset") == "Synthetic" and "Rank-1" in r]
        assert train and np.isfinite(train[-1]["total_loss"]), path
        assert evals and 0.0 <= evals[-1]["mAP"] <= 100.0, path
        assert (out / "model_final.ckpt").is_file(), path
