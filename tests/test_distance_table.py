"""TEST.DISTANCE all (AlignedReIDEvaluator) and tools/distance_table.py: the paper's five test
distances from one feature pass equal the five single-distance evaluations, and the values
equal slow references (brute-force DMLI, explicit rank loops)."""
import csv
import json
import os

import numpy as np
import pytest

import projects.AlignedReIDpp.alignedreidpp  # noqa: F401  (registers keys and the evaluator)
from fastreid_ms.evaluation import results_table
from fastreid_ms.evaluation.reid_evaluation import METRIC_NAMES
from projects.AlignedReIDpp.alignedreidpp.evaluator import DISTANCE_TABLE_COLUMNS

from _builders import REPO_ROOT, load_script, randomize_bn_stats, reference_distance, slow_rank
from test_dmli_eval import aligned_cfg, brute_force_dmli, evaluate, make_parts

SINGLE_RUNS = {column: (distance, aligned, rerank)
               for column, distance, aligned, rerank in DISTANCE_TABLE_COLUMNS}


def _single(res, column):
    """The metrics of ``column`` in a single-distance evaluation's results."""
    prefix = "RK " if SINGLE_RUNS[column][2] else ""
    return [res[prefix + m] for m in METRIC_NAMES]


def test_table_equals_single_runs_and_slow_reference():
    feats, pids, cams, nq = make_parts(seed=5, num_ids=8, per_id=4, junk=2)
    table, _ = evaluate(aligned_cfg("all"), feats, pids, cams, nq)
    assert [k.split("/")[0] for k in table if "/" in k][::6] == [c[0] for c in
                                                                  DISTANCE_TABLE_COLUMNS]
    for column, (distance, aligned, rerank) in SINGLE_RUNS.items():
        single, _ = evaluate(aligned_cfg(distance, rerank=rerank, aligned=aligned), feats, pids,
                             cams, nq)
        assert [table[f"{column}/{m}"] for m in METRIC_NAMES] == _single(single, column), column
    # the usual keys repeat Global+DMLI and its re-ranking (model_best, tools/compare.py)
    assert [table[m] for m in METRIC_NAMES] == [table["Global+DMLI/" + m] for m in METRIC_NAMES]
    assert table["RK mAP"] == table["Global+DMLI RK/mAP"]

    # slow references of the four plain columns
    keep = pids != -1
    p, c = pids[keep], cams[keep]
    g = feats["global"][keep].astype(np.float64)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    loc = feats["local"][keep]
    glob = reference_distance(g[:nq], g[nq:])
    unal = np.array([[brute_force_dmli(a, b, False) for b in loc[nq:]] for a in loc[:nq]])
    dmli = np.array([[brute_force_dmli(a, b, True) for b in loc[nq:]] for a in loc[:nq]])
    for column, dist in (("Global", glob), ("Local", unal), ("DMLI", dmli),
                         ("Global+DMLI", glob + dmli)):
        cmc, m_ap, m_inp = slow_rank(dist, p[:nq], p[nq:], c[:nq], c[nq:], 20)
        expected = [100 * cmc[r - 1] for r in (1, 5, 10, 20)] + [100 * m_ap, 100 * m_inp]
        assert [table[f"{column}/{m}"] for m in METRIC_NAMES] == pytest.approx(expected,
                                                                                abs=1e-3), column
    # the columns are five different evaluations on this data
    assert len({table[f"{c[0]}/mAP"] for c in DISTANCE_TABLE_COLUMNS}) == 5

    text = results_table(table, name="X")
    rows = [line.split("|")[1].strip() for line in text.splitlines()[2:]]
    assert rows == [f"X {c[0]}" for c in DISTANCE_TABLE_COLUMNS]


def test_bad_distance_is_named():
    feats, pids, cams, nq = make_parts(seed=1, num_ids=4, per_id=3, junk=0)
    with pytest.raises(ValueError, match="TEST.DISTANCE must be one of .*'all'"):
        evaluate(aligned_cfg("everything"), feats, pids, cams, nq)


# ----------------------------------------------------------------- one command = five runs
DEMO = os.path.join(REPO_ROOT, "configs", "Demo", "alignedpp_demo.yml")


@pytest.fixture(scope="module")
def random_checkpoint(synthetic_root, tmp_path_factory):
    """A random-init tiny AlignedReID++ (demo config at width 8, random BN statistics) saved
    as a checkpoint, and the config overrides that evaluate it on the small synthetic data."""
    from conftest import SMALL_SYNTHETIC
    from fastreid_ms.config import get_cfg
    from fastreid_ms.modeling import build_model
    from fastreid_ms.utils.checkpoint import Checkpointer
    out = tmp_path_factory.mktemp("random_model")
    opts = ["DATASETS.ROOT", synthetic_root, "INPUT.SIZE_TEST", "[64, 32]",
            "INPUT.SIZE_TRAIN", "[64, 32]", "MODEL.BACKBONE.BASE_WIDTH", "8",
            "MODEL.BACKBONE.FEAT_DIM", "64", "MODEL.HEADS.LOCAL_DIM", "16",
            "MODEL.MODE", "PYNATIVE", "TEST.IMS_PER_BATCH", "64", "DATALOADER.NUM_WORKERS", "1",
            "TEST.RERANK.K1", "6", "TEST.RERANK.K2", "3",
            "DATASETS.TESTS", "['Synthetic-Partial']",
            "DATASETS.PARTIAL.CACHE_DIR", str(out / "cache")]
    for key, value in SMALL_SYNTHETIC.items():
        opts += [f"DATASETS.SYNTHETIC.{key}", str(value)]
    cfg = get_cfg()
    cfg.merge_from_file(DEMO)
    cfg.merge_from_list(opts)
    model = build_model(cfg)
    randomize_bn_stats(model, seed=3)
    path = Checkpointer(model, str(out)).save("model_random")
    return path, opts, out


def test_one_command_equals_five_eval_only_runs(random_checkpoint, capsys):
    weights, opts, out = random_checkpoint
    train_net = load_script("tools/train_net.py")
    tool = load_script("tools/distance_table.py")
    table_dir = out / "table"
    status = tool.main(["--config-file", DEMO, "--output-dir", str(table_dir), *opts,
                        "MODEL.WEIGHTS", weights])
    assert status == 0
    printed = capsys.readouterr().out
    with open(table_dir / "distance_table.json", encoding="utf-8") as f:
        doc = json.load(f)
    with open(table_dir / "distance_table.csv", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    labels = [label for _, label in tool.COLUMN_LABELS]
    assert [r["distance"] for r in doc["rows"]] == labels
    assert {r["dataset"] for r in doc["rows"]} == {"Synthetic-Partial"}
    for label in labels:
        assert f"| Synthetic-Partial | {label}" in printed
    for column, (key, label) in zip(DISTANCE_TABLE_COLUMNS, tool.COLUMN_LABELS):
        distance, aligned, rerank = SINGLE_RUNS[key]
        args = train_net.default_argument_parser().parse_args(
            ["--config-file", DEMO, "--eval-only", *opts, "MODEL.WEIGHTS", weights,
             "OUTPUT_DIR", str(out / f"single_{distance}_{aligned}_{rerank}"),
             "TEST.DISTANCE", distance, "TEST.LOCAL.ALIGNED", str(aligned),
             "TEST.RERANK.ENABLED", str(rerank)])
        single = train_net.main(args)["Synthetic-Partial"]
        row = next(r for r in doc["rows"] if r["distance"] == label)
        assert [row[m] for m in METRIC_NAMES] == _single(single, key), label
        csv_row = next(r for r in csv_rows if r["distance"] == label)
        assert [float(csv_row[m]) for m in METRIC_NAMES] == pytest.approx(
            _single(single, key), abs=1e-4)
    assert len({r["mAP"] for r in doc["rows"]}) > 1  # not one evaluation printed five times
    by = {r["distance"]: r for r in doc["rows"]}
    gain = doc["dmli_minus_global"]["Synthetic-Partial"]
    assert gain["mAP"] == pytest.approx(by["DMLI"]["mAP"] - by["Global"]["mAP"])
    assert f"DMLI - Global on Synthetic-Partial: Rank-1 {gain['Rank-1']:+.1f}" in printed
