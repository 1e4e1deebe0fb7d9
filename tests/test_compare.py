"""tools/compare.py: run planning, reading metrics.json, the table and its CSV / JSON files."""
import csv
import json
import os

import numpy as np
import pytest
from _builders import load_script, reference_distance, slow_rank  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PCB_DEMO = os.path.join(ROOT, "projects", "PCB", "configs", "Demo", "pcb_demo.yml")


compare = load_script("tools/compare.py", "compare_tool")


def _write_run(folder, records):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return str(folder)


def _run_a(tmp_path):
    return _write_run(tmp_path / "alignedpp", [
        {"time": 100.0, "type": "train", "epoch": 0, "iteration": 10, "loss_cls": 4.0, "lr": 0.01},
        {"time": 150.0, "type": "eval", "epoch": 5, "Rank-1": 10.0, "Rank-5": 20.0,
         "Rank-10": 30.0, "Rank-20": 40.0, "mAP": 5.0, "mINP": 1.0},
        {"time": 250.0, "type": "train", "epoch": 9, "iteration": 100, "loss_cls": 1.0, "lr": 0.001},
        {"time": 300.0, "type": "eval", "epoch": 10, "Rank-1": 91.25, "Rank-5": 96.5,
         "Rank-10": 98.0, "Rank-20": 99.0, "mAP": 79.125, "mINP": 45.5,
         "RK Rank-1": 93.0, "RK Rank-5": 97.0, "RK Rank-10": 98.5, "RK Rank-20": 99.5,
         "RK mAP": 90.0, "RK mINP": 70.0},
    ])


def _run_b(tmp_path):
    return _write_run(tmp_path / "pcb", [
        {"time": 10.0, "type": "train", "epoch": 0, "loss_stripe_cls": 12.0, "lr": 0.1},
        {"time": 70.5, "type": "eval", "epoch": 3, "Rank-1": 80.0, "Rank-5": 90.0,
         "Rank-10": 95.0, "mAP": 60.0, "mINP": 20.0},
    ])


def test_final_results_take_the_last_evaluation(tmp_path):
    records = compare.read_metrics(os.path.join(_run_a(tmp_path), "metrics.json"))
    results = compare.final_results(records)
    assert len(results) == 1
    assert results[0]["epoch"] == 10 and results[0]["Rank-1"] == 91.25
    assert results[0]["RK mAP"] == 90.0
    assert compare.run_seconds(records) == pytest.approx(200.0)
    # Records older than `since` belong to an earlier run in the same folder.
    assert compare.final_results(records, since=301.0) == []
    assert compare.final_results(records[:2], since=120.0)[0]["epoch"] == 5


def test_results_per_test_dataset(tmp_path):
    records = [
        {"type": "eval", "epoch": 1, "dataset": "Market1501", "Rank-1": 1.0, "mAP": 1.0},
        {"type": "eval", "epoch": 1, "dataset": "DukeMTMC", "Rank-1": 2.0, "mAP": 2.0},
        {"type": "eval", "epoch": 2, "dataset": "Market1501", "Rank-1": 3.0, "mAP": 3.0},
        {"type": "train_end", "total_time": 42.0},
    ]
    results = compare.final_results(records)
    assert [(r["dataset"], r["Rank-1"]) for r in results] == [("Market1501", 3.0), ("DukeMTMC", 2.0)]
    assert compare.run_seconds(records) == 42.0


def test_collect_mode_table_csv_json(tmp_path, capsys):
    a, b = _run_a(tmp_path), _run_b(tmp_path)
    out = str(tmp_path / "out")
    assert compare.main(["--collect", a, b + "/metrics.json", "--output-dir", out]) == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("|")]
    assert table[0].split("|")[1].strip() == "run"
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == ["run", "Rank-1", "Rank-5", "Rank-10", "mAP", "mINP", "RK Rank-1",
                      "RK Rank-5", "RK Rank-10", "RK mAP", "RK mINP", "time"]
    row_a = [c.strip() for c in table[2].strip("|").split("|")]
    assert row_a == ["alignedpp", "91.25", "96.50", "98.00", "79.12", "45.50", "93.00", "97.00",
                     "98.50", "90.00", "70.00", "0:03:20"]
    row_b = [c.strip() for c in table[3].strip("|").split("|")]
    assert row_b[:6] == ["pcb", "80.00", "90.00", "95.00", "60.00", "20.00"]
    assert row_b[6:11] == [""] * 5 and row_b[11] == "0:01:00"

    with open(os.path.join(out, "comparison.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["alignedpp", "pcb"]
    assert float(rows[0]["mAP"]) == 79.125 and float(rows[0]["Rank-20"]) == 99.0
    assert float(rows[0]["RK Rank-1"]) == 93.0 and rows[1]["RK Rank-1"] == ""
    assert float(rows[1]["seconds"]) == pytest.approx(60.5)
    assert rows[0]["status"] == rows[1]["status"] == "ok"

    with open(os.path.join(out, "comparison.json"), encoding="utf-8") as f:
        runs = json.load(f)["runs"]
    assert runs[0]["name"] == "alignedpp" and runs[0]["epoch"] == 10
    assert runs[0]["Rank-1"] == 91.25 and runs[1]["mINP"] == 20.0
    assert "RK mAP" not in runs[1]
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_collect_reports_a_run_without_results(tmp_path, capsys):
    a = _run_a(tmp_path)
    empty = _write_run(tmp_path / "crashed", [{"time": 1.0, "type": "train", "loss_cls": 3.0}])
    missing = str(tmp_path / "never_ran")
    rc = compare.main(["--collect", a, empty, missing, "--name", "A", "--name", "B", "--name", "C",
                       "--output-dir", str(tmp_path / "out")])
    assert rc == 1
    printed = capsys.readouterr().out
    assert "no evaluation record in" in printed and "no metrics.json at" in printed
    with open(tmp_path / "out" / "comparison.json", encoding="utf-8") as f:
        runs = json.load(f)["runs"]
    assert [r["name"] for r in runs] == ["A", "B", "C"]
    assert [r["status"] == "ok" for r in runs] == [True, False, False]


def test_parse_variant():
    assert compare.parse_variant("lr: SOLVER.BASE_LR 0.1 MODEL.LOSSES.NAME \"['CrossEntropyLoss']\"") \
        == ("lr", ["SOLVER.BASE_LR", "0.1", "MODEL.LOSSES.NAME", "['CrossEntropyLoss']"])
    assert compare.parse_variant("plain:") == ("plain", [])
    assert compare.parse_variant("baseline") == ("baseline", [])
    with pytest.raises(compare.CompareError, match="name: KEY VALUE"):
        compare.parse_variant("SOLVER.BASE_LR 0.1")
    with pytest.raises(compare.CompareError, match="odd number"):
        compare.parse_variant("x: SOLVER.BASE_LR")


def test_plan_runs_names_dirs_and_overrides(tmp_path):
    runs = compare.plan_runs([PCB_DEMO], ["a: SOLVER.BASE_LR 0.1", "b c: SOLVER.MAX_EPOCH 2"],
                             [], ["SEED", "3"], str(tmp_path))
    assert [r["name"] for r in runs] == ["a", "b c"]
    assert runs[1]["output_dir"] == os.path.join(str(tmp_path), "b_c")
    assert runs[0]["opts"] == ["SEED", "3", "SOLVER.BASE_LR", "0.1"]
    cmd = compare.train_command(runs[0], eval_only=True)
    assert cmd[1].endswith(os.path.join("tools", "train_net.py"))
    assert cmd[2:5] == ["--config-file", PCB_DEMO, "--eval-only"]
    assert cmd[-2:] == ["OUTPUT_DIR", runs[0]["output_dir"]]

    two = compare.plan_runs([PCB_DEMO, PCB_DEMO.replace("Demo", "Market1501").replace(
        "pcb_demo", "pcb_R50")], ["x:"], [], [], str(tmp_path))
    assert [r["name"] for r in two] == ["pcb_demo:x", "pcb_R50:x"]
    with pytest.raises(compare.CompareError, match="named 'same'"):
        compare.plan_runs([PCB_DEMO], ["same: SEED 1", "same: SEED 2"], [], [], str(tmp_path))
    with pytest.raises(compare.CompareError, match="no such file"):
        compare.plan_runs([str(tmp_path / "nope.yml")], [], [], [], str(tmp_path))
    with pytest.raises(compare.CompareError, match="--name was given 1"):
        compare.plan_runs([PCB_DEMO], ["a:", "b:"], ["only"], [], str(tmp_path))


def test_dry_run_checks_configs_first(tmp_path, capsys):
    rc = compare.main(["--config-file", PCB_DEMO, "--variant", "s4: MODEL.HEADS.NUM_STRIPES 4",
                       "--variant", "s6:", "--output-dir", str(tmp_path), "--dry-run",
                       "SOLVER.MAX_EPOCH", "1"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("[s4] ") and "MODEL.HEADS.NUM_STRIPES 4" in lines[0]
    assert "SOLVER.MAX_EPOCH 1" in lines[1]
    assert not os.listdir(tmp_path)
    # A typo in a variant stops everything before the first run, naming the run.
    rc = compare.main(["--config-file", PCB_DEMO, "--variant", "bad: MODEL.HEADS.NUM_STRIPE 4",
                       "--output-dir", str(tmp_path), "--dry-run"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Run 'bad'" in err and "MODEL.HEADS.NUM_STRIPES" in err
    # Options after the common overrides would be swallowed by them: refused with the fix.
    rc = compare.main(["--config-file", PCB_DEMO, "SEED", "1", "--variant", "a: SEED 2"])
    assert rc == 2
    assert "--variant comes after the KEY VALUE overrides" in capsys.readouterr().err


TINY_PCB = ["DATASETS.ROOT", None,
            "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "8", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "8",
            "DATASETS.SYNTHETIC.IMAGES_PER_ID", "4", "DATASETS.SYNTHETIC.NUM_CAMERAS", "2",
            "INPUT.SIZE_TRAIN", "[48, 24]", "INPUT.SIZE_TEST", "[48, 24]",
            "SOLVER.IMS_PER_BATCH", "16", "DATALOADER.NUM_INSTANCE", "4",
            "DATALOADER.NUM_WORKERS", "1", "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_EPOCHS", "0",
            "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "1", "TEST.IMS_PER_BATCH", "32"]


def independent_metrics(tmp_path, config_file, opts, name):
    """Rank-1/5/10, mAP, mINP (percent) of a trained model's test features, computed apart from
    train_net's evaluation: tools/extract_features.py on the synthetic query and gallery
    folders (``opts`` hold DATASETS.ROOT and MODEL.WEIGHTS), squared euclidean distances in
    numpy, the slow rank loop."""
    extract = load_script("tools/extract_features.py", "compare_extract_features")
    root = opts[opts.index("DATASETS.ROOT") + 1]
    (dataset,) = [d for d in os.listdir(root) if d.startswith("synthetic_reid_")]
    sets = {}
    for split in ("query", "bounding_box_test"):
        out = extract.main(["--config-file", config_file, "--input",
                            os.path.join(root, dataset, split),
                            "--output", str(tmp_path / f"{name}_{split}.npz")] + opts)
        with np.load(out) as data:
            sets[split] = (data["global"], data["pids"], data["camids"])
    (qf, qp, qc), (gf, gp, gc) = sets["query"], sets["bounding_box_test"]
    cmc, mAP, mINP = slow_rank(reference_distance(qf, gf), qp, gp, qc, gc, 10)
    return ({"Rank-1": cmc[0] * 100, "Rank-5": cmc[4] * 100, "Rank-10": cmc[9] * 100,
             "mAP": mAP * 100, "mINP": mINP * 100}, qf.shape[1])


@pytest.mark.slow
def test_two_real_variants_through_train_net(tmp_path, capsys):
    """Two PCB variants trained for one epoch each by tools/train_net.py subprocesses."""
    if not os.path.isfile(compare.TRAIN_NET):
        pytest.skip("tools/train_net.py is not there yet")
    opts = list(TINY_PCB)
    opts[1] = str(tmp_path / "datasets")
    out = str(tmp_path / "cmp")
    rc = compare.main(["--config-file", PCB_DEMO, "--output-dir", out,
                       "--variant", "2 stripes: MODEL.HEADS.NUM_STRIPES 2",
                       "--variant", "3 stripes: MODEL.HEADS.NUM_STRIPES 3"] + opts)
    printed = capsys.readouterr().out
    assert rc == 0, printed
    with open(os.path.join(out, "comparison.json"), encoding="utf-8") as f:
        runs = json.load(f)["runs"]
    assert [r["name"] for r in runs] == ["2 stripes", "3 stripes"]
    for run in runs:
        assert run["status"] == "ok"
        assert run["output_dir"] == os.path.join(out, run["name"].replace(" ", "_"))
        assert run["Rank-1"] <= run["Rank-5"] <= run["Rank-10"]
        assert run["seconds"] > 0
        # The table row holds the same numbers as the run's own metrics.json.
        records = compare.read_metrics(os.path.join(run["output_dir"], "metrics.json"))
        final = compare.final_results(records)[0]
        for key in ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP"):
            assert final[key] == run[key], (run["name"], key)
    for name in ("2 stripes", "3 stripes"):
        assert any(line.startswith(f"| {name}") for line in printed.splitlines())

    # --eval-only on the first run's final weights: the default test feature reproduces
    # that run's own final evaluation exactly; the other feature is a different descriptor.
    weights = os.path.join(out, "2_stripes", "model_final.ckpt")
    assert os.path.isfile(weights)
    out_eval = str(tmp_path / "cmp_eval")
    rc = compare.main(["--config-file", PCB_DEMO, "--output-dir", out_eval, "--eval-only",
                       "--variant", "pooled: MODEL.HEADS.STRIPE_TEST_FEAT pooled",
                       "--variant", "reduced: MODEL.HEADS.STRIPE_TEST_FEAT reduced"]
                      + opts + ["MODEL.HEADS.NUM_STRIPES", "2", "MODEL.WEIGHTS", weights])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    with open(os.path.join(out_eval, "comparison.json"), encoding="utf-8") as f:
        evals = {r["name"]: r for r in json.load(f)["runs"]}
    trained = runs[0]
    for key in ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP"):
        assert evals["pooled"][key] == pytest.approx(trained[key], abs=1e-6)
    # Both descriptors of those weights evaluated apart from train_net: the trained run's
    # numbers are those of the pooled features, the "reduced" row those of the reduced ones.
    common = opts + ["MODEL.HEADS.NUM_STRIPES", "2", "MODEL.WEIGHTS", weights]
    for variant, row, dim in (("pooled", trained, 2 * 128), ("reduced", evals["reduced"], 2 * 64)):
        ref, feat_dim = independent_metrics(tmp_path, PCB_DEMO, common + [
            "MODEL.HEADS.STRIPE_TEST_FEAT", variant], variant)
        assert feat_dim == dim, variant
        for key, value in ref.items():
            assert row[key] == pytest.approx(value, abs=1e-4), (variant, key)
    assert evals["pooled"]["epoch"] is None and evals["pooled"]["dataset"] == "Synthetic"
