"""The Ascend 310 chain: preprocess.py -> fastreid_infer (C++) / infer_mindir.py -> postprocess.py,
the shell script that chains them, and the C++ program's build.

The C++ program is compiled where the MindSpore C++ API is available: MSLITE_ROOT (or
MINDSPORE_PATH) naming a folder with include/api/model.h and lib/, or the folder
ascend310_infer/fetch_mslite.sh fills (~/.cache/fastreid_ms/mindspore_lite).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import fastreid_ms  # noqa: F401  (CPU kernel ISA before MindSpore runs)
import mindspore as ms
from mindspore import nn, ops
from _builders import load_script, randomize_bn_stats  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFER_DIR = os.path.join(REPO, "ascend310_infer")
SCRIPT = os.path.join(REPO, "projects", "AlignedReIDpp", "scripts", "run_infer_310.sh")
MEAN = np.array([0.485, 0.456, 0.406], np.float64) * 255
STD = np.array([0.229, 0.224, 0.225], np.float64) * 255


def load_infer_script(name):
    """Import ascend310_infer/<name>.py as a module."""
    return load_script(f"ascend310_infer/{name}.py", f"infer310_{name}")


@pytest.fixture(scope="module", autouse=True)
def cpu_graph_mode():
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)


# ---------------------------------------------------------------------------------- shell script

def run_script(*args, cwd, env_extra=None):
    env = dict(os.environ)
    env.pop("INFER_RUNNER", None)
    env.update(env_extra or {})
    return subprocess.run(["bash", SCRIPT, *args], cwd=cwd, capture_output=True, text=True, env=env)


@pytest.fixture()
def script_inputs(tmp_path):
    (tmp_path / "model.mindir").write_bytes(b"x")
    (tmp_path / "query").mkdir()
    (tmp_path / "gallery").mkdir()
    (tmp_path / "cfg.yml").write_text("INPUT:\n  SIZE_TEST: [64, 32]\n")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    ([], "expected 3 arguments (MINDIR QUERY_DIR GALLERY_DIR), got 0"),
    (["model.mindir", "query"], "expected 3 arguments (MINDIR QUERY_DIR GALLERY_DIR), got 2"),
    (["missing.mindir", "query", "gallery"], "MINDIR 'missing.mindir' is not a file"),
    (["model.mindir", "nope", "gallery"], "QUERY_DIR 'nope' is not a folder"),
    (["model.mindir", "query", "nope"], "GALLERY_DIR 'nope' is not a folder"),
    (["model.mindir", "query", "gallery", "--config-file", "none.yml"], "config file 'none.yml' not found"),
    (["model.mindir", "query", "gallery", "--device-id", "x"], "--device-id must be a non-negative integer"),
    (["model.mindir", "query", "gallery", "--batch-size", "0"], "--batch-size must be a positive integer"),
    (["model.mindir", "query", "gallery", "--frobnicate"], "unknown option '--frobnicate'"),
    (["model.mindir", "query", "gallery", "--work-dir"], "--work-dir needs a value"),
])
def test_script_usage_errors(script_inputs, args, message):
    res = run_script(*args, cwd=script_inputs)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Usage: bash run_infer_310.sh [MINDIR] [QUERY_DIR] [GALLERY_DIR]" in res.stderr
    assert res.stdout == ""
    assert not (script_inputs / "infer_310").exists()


def test_script_help(script_inputs):
    res = run_script("--help", cwd=script_inputs)
    assert res.returncode == 0
    assert "--python-runner" in res.stderr and "--dry-run" in res.stderr


def test_script_bad_runner_env(script_inputs):
    res = run_script("model.mindir", "query", "gallery", "--config-file", "cfg.yml",
                     cwd=script_inputs, env_extra={"INFER_RUNNER": "java"})
    assert res.returncode == 2 and "INFER_RUNNER must be 'cpp' or 'python', got 'java'" in res.stderr


def test_script_dry_run_cpp(script_inputs):
    d = str(script_inputs)
    build_dir = os.path.join(d, "nobuild")
    res = run_script("model.mindir", "query", "gallery", "--config-file", "cfg.yml", "--device-id", "3",
                     "--dry-run", cwd=d, env_extra={"BUILD_DIR": build_dir})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().split("\n")
    work, prep, result = f"{d}/infer_310", f"{d}/infer_310/prep", f"{d}/infer_310/result_Files"
    assert lines == [
        f"python3 {INFER_DIR}/preprocess.py --config-file {d}/cfg.yml --query-dir {d}/query "
        f"--gallery-dir {d}/gallery --output-dir {prep} TEST.RERANK.ENABLED True > {work}/preprocess.log 2>&1",
        f"env BUILD_DIR={build_dir} bash {INFER_DIR}/build.sh > {work}/build.log 2>&1",
        f"{build_dir}/fastreid_infer --mindir_path={d}/model.mindir --input_path={prep}/query "
        f"--output_path={result}/query --device_id=3 > {work}/infer_query.log 2>&1",
        f"{build_dir}/fastreid_infer --mindir_path={d}/model.mindir --input_path={prep}/gallery "
        f"--output_path={result}/gallery --device_id=3 > {work}/infer_gallery.log 2>&1",
        f"python3 {INFER_DIR}/postprocess.py --config-file {d}/cfg.yml --preprocess-dir {prep} "
        f"--result-dir {result} --output {d}/acc.log TEST.RERANK.ENABLED True > {work}/postprocess.log 2>&1",
    ]
    assert not os.path.exists(work), "--dry-run must not create the work folder"


def test_script_dry_run_python_runner(script_inputs):
    d = str(script_inputs)
    res = run_script("model.mindir", "query", "gallery", "--config-file", "cfg.yml", "--dry-run",
                     "--python-runner", "--batch-size", "4", "--work-dir", "w",
                     "--", "TEST.DISTANCE", "global", cwd=d)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().split("\n")
    assert len(lines) == 4
    assert lines[0].endswith(f"--output-dir {d}/w/prep TEST.DISTANCE global > {d}/w/preprocess.log 2>&1")
    for line, split in zip(lines[1:3], ("query", "gallery")):
        assert line == (f"python3 {INFER_DIR}/infer_mindir.py --mindir_path {d}/model.mindir "
                        f"--input_path {d}/w/prep/{split} --output_path {d}/w/result_Files/{split} "
                        f"--batch-size 4 > {d}/w/infer_{split}.log 2>&1")
    assert "TEST.RERANK" not in lines[3] and lines[3].split(" > ")[0].endswith("TEST.DISTANCE global")
    # The same through the environment variable.
    res2 = run_script("model.mindir", "query", "gallery", "--config-file", "cfg.yml", "--dry-run",
                      "--batch-size", "4", "--work-dir", "w", "--", "TEST.DISTANCE", "global",
                      cwd=d, env_extra={"INFER_RUNNER": "python"})
    assert res2.stdout == res.stdout


# ---------------------------------------------------------------------------------- file formats

def test_bin_format_lists_roundtrip(tmp_path):
    bf = load_infer_script("bin_format")
    rows = [("0001_c1s1_000001_00", 1, 0, "/data/with space/0001_c1s1_000001_00.jpg"),
            ("odd", -1, -1, "/x/odd.png")]
    path = str(tmp_path / "query_list.txt")
    bf.write_list(path, rows)
    assert bf.read_list(path) == rows
    bf.write_shape_file(str(tmp_path / "output_shapes.txt"), [(2048,), (8, 2048)], indexed=True)
    assert (tmp_path / "output_shapes.txt").read_text() == "0 2048\n1 8 2048\n"
    assert bf.read_output_shapes(str(tmp_path)) == [(2048,), (8, 2048)]
    (tmp_path / "output_shapes.txt").write_text("0 4\n2 3\n")
    with pytest.raises(ValueError, match="must list outputs 0..K-1"):
        bf.read_output_shapes(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="image_shape.txt' is missing"):
        bf.read_image_shape(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No .bin files"):
        bf.list_bin_files(str(tmp_path))
    (tmp_path / "bad_list.txt").write_text("stem notanint 0 p\n")
    with pytest.raises(ValueError, match="bad_list.txt:1: expected 'stem pid camid path'"):
        bf.read_list(str(tmp_path / "bad_list.txt"))


def write_image(path, seed, size=(20, 12)):
    rng = np.random.RandomState(seed)
    Image.fromarray(rng.randint(0, 256, (size[0], size[1], 3), dtype=np.uint8)).save(path)


def reference_preprocess(path, height, width):
    """Independent test transform: PIL bilinear resize, (x - mean) / std, CHW, float32."""
    img = Image.open(path).convert("RGB").resize((width, height), Image.BILINEAR)
    x = (np.asarray(img, np.float64) - MEAN) / STD
    return x.transpose(2, 0, 1).astype(np.float32)


def test_preprocess_bins_labels_and_lists(tmp_path):
    pre = load_infer_script("preprocess")
    from fastreid_ms.config import get_cfg
    q, g = tmp_path / "q", tmp_path / "g"
    q.mkdir()
    g.mkdir()
    names_q = ["0001_c1s1_000001_00.jpg", "0002_c3s2_000100_01.png", "0000_c1s1_000002_00.jpg"]
    names_g = ["0001_c2s1_000050_00.jpg", "-1_c1s1_000003_00.jpg", "0000_c4s1_000004_00.jpg",
               "walker.png"]
    for i, n in enumerate(names_q):
        write_image(q / n, i)
    for i, n in enumerate(names_g):
        write_image(g / n, 10 + i)
    (g / "notes.txt").write_text("not an image")
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.SIZE_TEST", [16, 8]])
    out = tmp_path / "prep"
    rows = pre.preprocess(cfg, str(q), str(g), str(out))
    # Junk (-1) dropped; distractors (0) dropped from the query only; other names -> -1.
    assert [r[:3] for r in rows["query"]] == [("0001_c1s1_000001_00", 1, 0), ("0002_c3s2_000100_01", 2, 2)]
    assert [r[:3] for r in rows["gallery"]] == [("0000_c4s1_000004_00", 0, 3),
                                                ("0001_c2s1_000050_00", 1, 1), ("walker", -1, -1)]
    bf = load_infer_script("bin_format")
    assert bf.read_list(str(out / "gallery_list.txt")) == rows["gallery"]
    for split, folder in (("query", q), ("gallery", g)):
        assert (out / split / "image_shape.txt").read_text() == "3 16 8\n"
        for stem, _, _, path in rows[split]:
            assert os.path.dirname(path) == str(folder)
            data = np.fromfile(out / split / f"{stem}.bin", dtype=np.float32)
            np.testing.assert_allclose(data.reshape(3, 16, 8), reference_preprocess(path, 16, 8),
                                       rtol=0, atol=1e-5)
        assert sorted(os.listdir(out / split)) == sorted(
            [f"{r[0]}.bin" for r in rows[split]] + ["image_shape.txt"])
    assert sorted(os.listdir(out)) == ["gallery", "gallery_list.txt", "query", "query_list.txt"]
    # A second run replaces the folders (no stale files, no temporaries).
    os.remove(g / "walker.png")
    rows2 = pre.preprocess(cfg, str(q), str(g), str(out))
    assert len(rows2["gallery"]) == 2 and not (out / "gallery" / "walker.bin").exists()
    assert sorted(os.listdir(out)) == ["gallery", "gallery_list.txt", "query", "query_list.txt"]


def test_preprocess_errors(tmp_path):
    pre = load_infer_script("preprocess")
    from fastreid_ms.config import get_cfg
    cfg = get_cfg()
    (tmp_path / "q").mkdir()
    with pytest.raises(FileNotFoundError, match="No images"):
        pre.preprocess(cfg, str(tmp_path / "q"), str(tmp_path / "q"), str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pre.preprocess(cfg, str(tmp_path / "nope"), str(tmp_path / "q"), str(tmp_path / "o"))
    write_image(tmp_path / "q" / "a.jpg", 0)
    write_image(tmp_path / "q" / "a.png", 1)
    with pytest.raises(ValueError, match="same name stem 'a'"):
        pre.preprocess(cfg, str(tmp_path / "q"), str(tmp_path / "q"), str(tmp_path / "o"))


# ---------------------------------------------------------------------------------- Python runner

class TwoFeatureNet(nn.Cell):
    """A small hand-written model: dict of a global (N, 6) and a local (N, 4, 6) feature."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, has_bias=True)
        self.bn = nn.BatchNorm2d(6)

    def construct(self, x):
        f = ops.relu(self.bn(self.conv(x)))
        return {"local": f.max(axis=3).transpose(0, 2, 1), "global": f.mean(axis=(2, 3))}


@pytest.mark.parametrize("batch_size, export_batch", [(1, 1), (4, None), (2, 2)])
def test_infer_mindir_writes_cpp_layout(tmp_path, batch_size, export_batch):
    from fastreid_ms.modeling.export_wrapper import export_inference_model
    runner = load_infer_script("infer_mindir")
    net = TwoFeatureNet()
    net.set_train(False)
    path, names = export_inference_model(net, "MINDIR", str(tmp_path / "net"), (8, 4), export_batch)
    assert names == ("global", "local")
    inp = tmp_path / "bins"
    inp.mkdir()
    images = np.random.RandomState(0).randn(5, 3, 8, 4).astype(np.float32)
    stems = [f"img_{i}" for i in range(5)]
    for stem, img in zip(stems, images):
        img.tofile(inp / f"{stem}.bin")
    (inp / "image_shape.txt").write_text("3 8 4\n")
    n = runner.run_mindir(path, str(inp), str(tmp_path / "out"), batch_size=batch_size)
    assert n == 5
    ref = net(ms.Tensor(images))
    out = tmp_path / "out"
    assert (out / "output_shapes.txt").read_text() == "0 6\n1 4 6\n"
    assert sorted(os.listdir(out)) == sorted(["output_shapes.txt"] + [f"{s}_{k}.bin" for s in stems for k in (0, 1)])
    for i, stem in enumerate(stems):
        np.testing.assert_array_equal(np.fromfile(out / f"{stem}_0.bin", np.float32), ref["global"].asnumpy()[i])
        np.testing.assert_array_equal(np.fromfile(out / f"{stem}_1.bin", np.float32).reshape(4, 6),
                                      ref["local"].asnumpy()[i])
    # Mismatched binaries give an error naming the file.
    np.zeros(7, np.float32).tofile(inp / "img_9.bin")
    with pytest.raises(ValueError, match="img_9.bin' holds 7 float32 values, expected 96"):
        runner.run_mindir(path, str(inp), str(tmp_path / "out2"), batch_size=batch_size)
    assert not (tmp_path / "out2").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_infer_mindir_errors(tmp_path):
    runner = load_infer_script("infer_mindir")
    with pytest.raises(FileNotFoundError, match="MINDIR '.*nope.mindir' does not exist"):
        runner.run_mindir(str(tmp_path / "nope.mindir"), str(tmp_path), str(tmp_path / "o"))
    (tmp_path / "m.mindir").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="Input folder .* does not exist"):
        runner.run_mindir(str(tmp_path / "m.mindir"), str(tmp_path / "none"), str(tmp_path / "o"))


# ---------------------------------------------------------------------------------- postprocess

def test_postprocess_reads_features_in_list_order(tmp_path):
    post = load_infer_script("postprocess")
    bf = load_infer_script("bin_format")
    prep, res = tmp_path / "prep", tmp_path / "res"
    rng = np.random.RandomState(1)
    expected = {}
    for split, n in (("query", 2), ("gallery", 3)):
        (res / split).mkdir(parents=True)
        rows = [(f"{split}{i}", i, i % 2, f"/img/{split}{i}.jpg") for i in range(n)]
        prep.mkdir(exist_ok=True)
        bf.write_list(str(prep / f"{split}_list.txt"), rows)
        g = rng.randn(n, 5).astype(np.float32)
        l = rng.randn(n, 3, 2).astype(np.float32)
        for i, row in enumerate(rows):
            g[i].tofile(res / split / f"{row[0]}_0.bin")
            l[i].tofile(res / split / f"{row[0]}_1.bin")
        bf.write_shape_file(str(res / split / "output_shapes.txt"), [(5,), (3, 2)], indexed=True)
        expected[split] = (g, l, [r[1] for r in rows], [r[2] for r in rows])
    feats, pids, camids, nq, paths = post.load_features(str(prep), str(res))
    assert nq == 2 and list(feats) == ["global", "local"]
    np.testing.assert_array_equal(feats["global"], np.concatenate([expected["query"][0], expected["gallery"][0]]))
    np.testing.assert_array_equal(feats["local"], np.concatenate([expected["query"][1], expected["gallery"][1]]))
    assert pids.tolist() == [0, 1, 0, 1, 2] and camids.tolist() == [0, 1, 0, 1, 0]
    assert paths[0] == "/img/query0.jpg"
    with pytest.raises(ValueError, match=r"1 feature names \(global\) for 2 outputs"):
        post.load_features(str(prep), str(res), feature_names=["global"])
    os.remove(res / "gallery" / "gallery2_1.bin")
    with pytest.raises(FileNotFoundError, match="gallery2_1.bin' is missing"):
        post.load_features(str(prep), str(res))


# ---------------------------------------------------------------------------------- C++ program

def mslite_root():
    """A folder with the MindSpore C++ API (include/api/model.h) or None."""
    candidates = [os.environ.get("MSLITE_ROOT", ""), os.environ.get("MINDSPORE_PATH", ""),
                  os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                               "fastreid_ms", "mindspore_lite")]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "include", "api", "model.h")):
            return c
    return None


def test_build_script_without_api_fails_clearly(tmp_path):
    env = dict(os.environ, MINDSPORE_PATH=str(tmp_path), BUILD_DIR=str(tmp_path / "b"))
    res = subprocess.run(["bash", os.path.join(INFER_DIR, "build.sh")], capture_output=True, text=True, env=env)
    assert res.returncode != 0
    assert f"MINDSPORE_PATH={tmp_path} has no include/api/model.h" in res.stderr


def test_cpp_program_compiles_and_runs(tmp_path):
    root = mslite_root()
    if root is None:
        pytest.skip("MindSpore C++ API not found: set MSLITE_ROOT to a folder with include/api/model.h "
                    "and lib/, or run `bash ascend310_infer/fetch_mslite.sh`")
    if shutil.which("cmake") is None or shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("cmake or a C++ compiler is missing")
    build = tmp_path / "build"
    env = dict(os.environ, MINDSPORE_PATH=root, BUILD_DIR=str(build))
    res = subprocess.run(["bash", os.path.join(INFER_DIR, "build.sh")], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    exe = build / "fastreid_infer"
    assert exe.is_file() and os.access(exe, os.X_OK)
    # Running needs the runtime's shared libraries; check the argument handling and the error
    # paths that do not need a device.
    run_env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, "lib"))

    def run(*args):
        return subprocess.run([str(exe), *args], capture_output=True, text=True, env=run_env, timeout=120)

    probe = run("--help")
    if probe.returncode == 127 or "error while loading shared libraries" in probe.stderr:
        pytest.skip(f"compiled; the runtime libraries of {root} do not load here: {probe.stderr.strip()}")
    assert probe.returncode == 0 and "Usage: fastreid_infer --mindir_path=FILE" in probe.stderr
    res = run("--bogus=1")
    assert res.returncode == 2 and "unknown flag --bogus" in res.stderr
    res = run("--mindir_path", "m.mindir")
    assert res.returncode == 2 and "--mindir_path, --input_path and --output_path are required" in res.stderr
    res = run("--mindir_path=m.mindir", f"--input_path={tmp_path}/none", f"--output_path={tmp_path}/o")
    assert res.returncode == 1 and f"cannot open the input folder '{tmp_path}/none'" in res.stderr
    (tmp_path / "in").mkdir()
    res = run("--mindir_path=m.mindir", f"--input_path={tmp_path}/in", f"--output_path={tmp_path}/o")
    assert res.returncode == 1 and "no .bin files in" in res.stderr
    np.zeros(12, np.float32).tofile(tmp_path / "in" / "a.bin")
    (tmp_path / "bad.mindir").write_bytes(b"not a model")
    res = run(f"--mindir_path={tmp_path}/bad.mindir", f"--input_path={tmp_path}/in",
              f"--output_path={tmp_path}/o", "--device_target=CPU")
    assert res.returncode == 1 and f"cannot load the MINDIR '{tmp_path}/bad.mindir'" in res.stderr


# ---------------------------------------------------------------------------------- whole chain

E2E_CONFIG = """\
PLUGINS: [projects.AlignedReIDpp.alignedreidpp]
MODEL:
  META_ARCHITECTURE: Baseline
  BACKBONE: {DEPTH: 18, BASE_WIDTH: 16, FEAT_DIM: 128}
  HEADS: {NAME: AlignedReIDppHead, NUM_CLASSES: 6, LOCAL_DIM: 16}
INPUT: {SIZE_TRAIN: [64, 32], SIZE_TEST: [64, 32]}
DATASETS:
  NAMES: [Synthetic]
  TESTS: [Synthetic]
  ROOT: %(root)s
  SYNTHETIC: {NUM_TRAIN_IDS: 4, NUM_TEST_IDS: 8, IMAGES_PER_ID: 4, NUM_CAMERAS: 3, HEIGHT: 64, WIDTH: 32}
DATALOADER: {NUM_WORKERS: 1}
TEST: {EVALUATOR: AlignedReIDEvaluator, DISTANCE: global_local, IMS_PER_BATCH: 16, RERANK: {ENABLED: True},
       FLIP: {ENABLED: True}}
OUTPUT_DIR: %(root)s/out
"""


def test_chain_matches_eval_only(tmp_path):
    """preprocess -> Python MINDIR runner -> postprocess gives the metrics of the in-process
    evaluation (DefaultTrainer.test, what --eval-only runs) of the same weights, re-ranking and
    flip averaging (exported into the graph) included; the shell script with --python-runner
    writes the same acc.log."""
    from fastreid_ms.config import get_cfg
    from fastreid_ms.data import build_dataset
    from fastreid_ms.engine.trainer import DefaultTrainer
    from fastreid_ms.evaluation import results_table
    from fastreid_ms.modeling import build_model
    from fastreid_ms.modeling.export_wrapper import export_inference_model
    from fastreid_ms.utils.checkpoint import Checkpointer

    cfg_file = tmp_path / "tiny.yml"
    cfg_file.write_text(E2E_CONFIG % {"root": tmp_path / "data"})
    cfg = get_cfg()
    cfg.merge_from_file(str(cfg_file))
    ms.set_seed(0)
    model = build_model(cfg)
    randomize_bn_stats(model, variances=False)
    model.set_train(False)
    ckpt = Checkpointer(model, str(tmp_path)).save("model_final", tag_last=False)

    expected = DefaultTrainer.test(cfg, model)["Synthetic"]
    assert "RK mAP" in expected

    dataset = build_dataset(cfg, "Synthetic")
    query_dir = os.path.dirname(dataset.query[0][0])
    gallery_dir = os.path.dirname(dataset.gallery[0][0])
    mindir, _ = export_inference_model(model, "MINDIR", str(tmp_path / "tiny"), (64, 32), batch_size=None,
                                       flip=cfg.TEST.FLIP.ENABLED)

    pre, runner, post = load_infer_script("preprocess"), load_infer_script("infer_mindir"), load_infer_script("postprocess")
    rows = pre.preprocess(cfg, query_dir, gallery_dir, str(tmp_path / "prep"))
    assert [(r[1], r[2]) for r in rows["query"]] == [(p, c) for _, p, c in dataset.query]
    assert [(r[1], r[2]) for r in rows["gallery"]] == [(p, c) for _, p, c in dataset.gallery]
    for split in ("query", "gallery"):
        runner.run_mindir(mindir, str(tmp_path / "prep" / split), str(tmp_path / "res" / split), batch_size=8)
    results = post.postprocess(cfg, str(tmp_path / "prep"), str(tmp_path / "res"), str(tmp_path / "acc.log"))
    assert list(results) == list(expected)
    for key in expected:
        assert results[key] == pytest.approx(expected[key], abs=1e-6), key
    log = (tmp_path / "acc.log").read_text()
    assert results_table(expected) in log
    assert f"mAP: {expected['mAP']:.1f}%" in log and f"mAP(RK): {expected['RK mAP']:.1f}%" in log

    # The shell script, Python runner, the same weights re-exported through tools/export.py.
    export = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), "--config-file", str(cfg_file),
                             "--output", str(tmp_path / "cli"), "--batch-size", "1", "MODEL.WEIGHTS", ckpt],
                            capture_output=True, text=True, cwd=tmp_path)
    assert export.returncode == 0, export.stderr[-2000:]
    assert export.stdout.strip().endswith(str(tmp_path / "cli.mindir"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    res = subprocess.run(["bash", SCRIPT, str(tmp_path / "cli.mindir"), query_dir, gallery_dir,
                          "--config-file", str(cfg_file), "--python-runner"],
                         cwd=run_dir, capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=sys.executable))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (run_dir / "acc.log").read_text() == log
    assert sorted(os.listdir(run_dir / "infer_310")) == sorted([
        "infer_gallery.log", "infer_query.log", "postprocess.log", "preprocess.log", "prep", "result_Files"])
