"""tools/extract_features.py (folder -> .npz of features) and tools/rank_gallery.py."""
import os

import numpy as np
import pytest
from PIL import Image

import fastreid_ms  # noqa: F401  (CPU kernel ISA before MindSpore runs)
import mindspore as ms

from fastreid_ms.config import get_cfg
from _builders import load_script, randomize_bn_stats  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 64, 32
ALIGNED_PLUGIN = "projects.AlignedReIDpp.alignedreidpp"
MEAN = np.array([0.485, 0.456, 0.406], np.float64) * 255
STD = np.array([0.229, 0.224, 0.225], np.float64) * 255
CONFIG = f"""\
PLUGINS: [{ALIGNED_PLUGIN}]
MODEL:
  META_ARCHITECTURE: Baseline
  BACKBONE: {{DEPTH: 18, BASE_WIDTH: 16, FEAT_DIM: 128}}
  HEADS: {{NAME: AlignedReIDppHead, NUM_CLASSES: 6, LOCAL_DIM: 16}}
INPUT: {{SIZE_TRAIN: [{HEIGHT}, {WIDTH}], SIZE_TEST: [{HEIGHT}, {WIDTH}]}}
"""


def load_tool(name):
    return load_script(f"tools/{name}.py", f"tool_{name}")


def reference_input(path):
    """Independent test transform: RGB, PIL bilinear resize, (x - mean) / std, CHW."""
    img = Image.open(path).convert("RGB").resize((WIDTH, HEIGHT), Image.BILINEAR)
    return ((np.asarray(img, np.float64) - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(config file, checkpoint, model, image folder, image names) of a tiny AlignedReID++ model."""
    from fastreid_ms.modeling import build_model
    from fastreid_ms.utils.checkpoint import Checkpointer
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    root = tmp_path_factory.mktemp("extract")
    cfg_file = root / "tiny.yml"
    cfg_file.write_text(CONFIG)
    cfg = get_cfg()
    cfg.merge_from_file(str(cfg_file))
    model = build_model(cfg)
    randomize_bn_stats(model, variances=False)
    model.set_train(False)
    ckpt = Checkpointer(model, str(root)).save("model_final", tag_last=False)
    folder = root / "images"
    folder.mkdir()
    rng = np.random.RandomState(0)
    names = ["0003_c2s1_000010_00.jpg", "0001_c1s1_000001_00.jpg", "0001_c3s2_000200_01.png",
             "-1_c1s1_000005_00.jpg", "street_walker.png"]
    for i, name in enumerate(names):
        arr = rng.randint(0, 256, (50 + 3 * i, 24 + i, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / name)
    (folder / "readme.txt").write_text("not an image")
    return str(cfg_file), ckpt, model, folder, sorted(names)


def model_features(model, paths, flip=False):
    x = np.stack([reference_input(p) for p in paths])
    out = {k: v.asnumpy() for k, v in model(ms.Tensor(x)).items()}
    if flip:
        out_f = {k: v.asnumpy() for k, v in model(ms.Tensor(np.ascontiguousarray(x[..., ::-1]))).items()}
        out = {k: (v + out_f[k]) / 2 for k, v in out.items()}
    return out


@pytest.mark.parametrize("flip", [False, True])
def test_extract_features_npz(tmp_path, setup, flip):
    cfg_file, ckpt, model, folder, names = setup
    tool = load_tool("extract_features")
    out = tool.main(["--config-file", cfg_file, "--input", str(folder), "--output", str(tmp_path / "feats"),
                     "--batch-size", "2", "MODEL.WEIGHTS", ckpt, "TEST.FLIP.ENABLED", str(flip)])
    assert out == str(tmp_path / "feats.npz")
    assert os.listdir(tmp_path) == ["feats.npz"]
    with np.load(out, allow_pickle=False) as data:
        assert sorted(data.files) == ["camids", "global", "local", "paths", "pids"]
        paths = [str(p) for p in data["paths"]]
        assert paths == [str(folder / n) for n in names]
        # Sorted names: "-1_c1...", "0001_c1...", "0001_c3...", "0003_c2...", "street_walker".
        assert data["pids"].tolist() == [-1, 1, 1, 3, -1]
        assert data["camids"].tolist() == [0, 0, 2, 1, -1]
        ref = model_features(model, paths, flip)
        for key in ("global", "local"):
            assert data[key].dtype == np.float32 and data[key].shape == ref[key].shape
            np.testing.assert_allclose(data[key], ref[key], rtol=1e-4, atol=1e-4)
    feats, paths2, pids, camids = tool.load_features_npz(out)
    assert list(feats) == ["global", "local"] and paths2 == paths and pids.dtype == np.int64


def test_extract_features_errors(tmp_path, setup):
    cfg_file, ckpt, _, _, _ = setup
    tool = load_tool("extract_features")
    with pytest.raises(FileNotFoundError, match="Image folder .*nope' does not exist"):
        tool.main(["--config-file", cfg_file, "--input", str(tmp_path / "nope"), "--output",
                   str(tmp_path / "f.npz"), "MODEL.WEIGHTS", ckpt])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No images"):
        tool.main(["--config-file", cfg_file, "--input", str(tmp_path / "empty"), "--output",
                   str(tmp_path / "f.npz"), "MODEL.WEIGHTS", ckpt])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tool.load_features_npz(str(tmp_path / "none.npz"))
    np.savez(tmp_path / "other.npz", global_=np.zeros(2))
    with pytest.raises(ValueError, match="lacks"):
        tool.load_features_npz(str(tmp_path / "other.npz"))
    with pytest.raises(ValueError, match="clash"):
        tool.save_features_npz(str(tmp_path / "x.npz"), {"paths": np.zeros(1)}, ["a"], [0], [0])
    assert not (tmp_path / "f.npz").exists()


def test_rank_gallery_global_distance(tmp_path, setup, capsys):
    cfg_file, ckpt, model, folder, names = setup
    tool = load_tool("rank_gallery")
    query = str(folder / "0001_c1s1_000001_00.jpg")
    ranked = tool.main(["--config-file", cfg_file, "--query", query, "--gallery", str(folder), "--topk", "3",
                        "MODEL.WEIGHTS", ckpt, "TEST.EVALUATOR", "ReidEvaluator", "TEST.METRIC", "euclidean"])
    paths = [str(folder / n) for n in names]
    feats = model_features(model, paths)["global"].astype(np.float64)
    q = model_features(model, [query])["global"].astype(np.float64)[0]
    ref = ((feats - q) ** 2).sum(axis=1)  # squared euclidean, as the evaluation ranks
    order = np.argsort(ref, kind="stable")[:3]
    assert [r[3] for r in ranked] == [paths[i] for i in order]
    assert ranked[0][3] == query and [r[0] for r in ranked] == [1, 2, 3]
    np.testing.assert_allclose([r[1] for r in ranked], ref[order], rtol=1e-3, atol=1e-3)
    printed = capsys.readouterr().out
    assert "rank" in printed and "distance" in printed and "same id" in printed and query in printed

    # From an .npz of the gallery: the same ranking.
    ext = load_tool("extract_features")
    npz = ext.main(["--config-file", cfg_file, "--input", str(folder), "--output", str(tmp_path / "g.npz"),
                    "MODEL.WEIGHTS", ckpt])
    ranked2 = tool.main(["--config-file", cfg_file, "--query", query, "--gallery-features", npz, "--topk", "3",
                         "MODEL.WEIGHTS", ckpt, "TEST.EVALUATOR", "ReidEvaluator"])
    assert [r[3] for r in ranked2] == [r[3] for r in ranked]


def slow_dmli(a, b):
    """DMLI of two (P, C) part sets: squashed part distances, shortest right/down path length."""
    p = a.shape[0]
    d = np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))
    d = (np.exp(d) - 1) / (np.exp(d) + 1)
    acc = np.zeros((p, p))
    for i in range(p):
        for j in range(p):
            prev = [acc[i - 1, j]] if i > 0 else []
            prev += [acc[i, j - 1]] if j > 0 else []
            acc[i, j] = d[i, j] + (min(prev) if prev else 0.0)
    return acc[-1, -1]


def test_rank_gallery_aligned_distance(setup):
    cfg_file, ckpt, model, folder, names = setup
    tool = load_tool("rank_gallery")
    query = str(folder / "0003_c2s1_000010_00.jpg")
    ranked = tool.main(["--config-file", cfg_file, "--query", query, "--gallery", str(folder),
                        "MODEL.WEIGHTS", ckpt, "TEST.EVALUATOR", "AlignedReIDEvaluator",
                        "TEST.DISTANCE", "global_local", "TEST.METRIC", "euclidean"])
    paths = [str(folder / n) for n in names]
    g = model_features(model, paths)
    q = model_features(model, [query])
    unit = lambda v: v.astype(np.float64) / np.linalg.norm(v)  # noqa: E731  (the seed normalises)
    ref = np.array([((unit(g["global"][i]) - unit(q["global"][0])) ** 2).sum()
                    + slow_dmli(q["local"][0], g["local"][i]) for i in range(len(paths))])
    order = np.argsort(ref, kind="stable")
    assert len(ranked) == 5 and ranked[0][3] == query
    assert [r[3] for r in ranked] == [paths[i] for i in order]
    np.testing.assert_allclose([r[1] for r in ranked], ref[order], rtol=1e-3, atol=1e-3)
