#!/usr/bin/env python
"""The AlignedReID++ paper's table of test distances for a trained model, one feature pass.

    python tools/distance_table.py --config-file configs/Market1501/alignedpp_R50.yml \\
        MODEL.WEIGHTS logs/market1501/alignedpp_R50/model_final.ckpt
    python tools/distance_table.py --config-file configs/Demo/alignedpp_demo_partial.yml \\
        --output-dir logs/demo/tables MODEL.WEIGHTS logs/demo/alignedpp_demo/model_final.ckpt

For every DATASETS.TESTS entry (e.g. "Market1501" and "Market1501-Partial") the features are
extracted once and evaluated at the paper's five test distances: Global, Local (unaligned
part distances), DMLI (aligned), Global+DMLI, and Global+DMLI re-ranked (TEST.RERANK.K1 / K2 /
LAMBDA / CANDIDATES), each with Rank-1 / 5 / 10 / 20, mAP and mINP: the metrics five
``tools/train_net.py --eval-only`` runs with TEST.DISTANCE / TEST.LOCAL.ALIGNED /
TEST.RERANK.ENABLED set per column would give. It is ``train_net.py --eval-only ...
TEST.DISTANCE all`` plus the table: printed (tabulate), and written to
``<output dir>/distance_table.csv`` and ``distance_table.json`` (default output dir:
OUTPUT_DIR; metrics.json there gets the records as --eval-only writes them).
Exit status 2 with one message for a user error (missing dataset or weights, config key).
"""
import argparse
import csv
import io
import json
import os
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TOOLS)
for path in (REPO_ROOT, TOOLS):
    if path not in sys.path:
        sys.path.insert(0, path)

import train_net  # noqa: E402  (sets the CPU kernel choice before MindSpore starts)

METRICS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")
# Result key prefix (AlignedReIDEvaluator's DISTANCE_TABLE_COLUMNS) -> the table's column name.
COLUMN_LABELS = (("Global", "Global"), ("Local", "Local (unaligned)"), ("DMLI", "DMLI"),
                 ("Global+DMLI", "Global+DMLI"), ("Global+DMLI RK", "Global+DMLI re-ranked"))


def table_rows(results):
    """[{"dataset", "distance", metric: percent, ...}] from {dataset: evaluator results}."""
    rows = []
    for dataset, res in results.items():
        for key, label in COLUMN_LABELS:
            if f"{key}/mAP" not in res:
                raise KeyError(f"The evaluation of {dataset} has no '{key}' column: is "
                               "TEST.EVALUATOR AlignedReIDEvaluator (PLUGINS "
                               "['projects.AlignedReIDpp.alignedreidpp'])?")
            rows.append({"dataset": dataset, "distance": label,
                         **{m: float(res[f"{key}/{m}"]) for m in METRICS}})
    return rows


def dmli_gains(rows):
    """{dataset: {metric: DMLI - Global, ...}} (percentage points): what aligning the parts
    adds to the global feature's ranking, the paper's partial re-ID comparison."""
    by = {(r["dataset"], r["distance"]): r for r in rows}
    return {d: {m: by[(d, "DMLI")][m] - by[(d, "Global")][m] for m in ("Rank-1", "mAP")}
            for d in dict.fromkeys(r["dataset"] for r in rows)}


def format_table(rows, floatfmt=".1f") -> str:
    from tabulate import tabulate
    body = [[r["dataset"], r["distance"]] + [r[m] for m in METRICS] for r in rows]
    return tabulate(body, headers=["dataset", "distance", *METRICS], tablefmt="pipe",
                    floatfmt=floatfmt)


def rows_csv(rows) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["dataset", "distance", *METRICS],
                            lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return out.getvalue()


def write_outputs(rows, output_dir, weights="", config_file=""):
    """distance_table.csv / .json in ``output_dir`` (atomically); returns their paths."""
    from fastreid_ms.utils.file_io import atomic_write_text
    os.makedirs(output_dir, exist_ok=True)
    csv_path = os.path.join(output_dir, "distance_table.csv")
    json_path = os.path.join(output_dir, "distance_table.json")
    atomic_write_text(csv_path, rows_csv(rows))
    atomic_write_text(json_path, json.dumps({"config_file": config_file, "weights": weights,
                                             "metrics": list(METRICS), "rows": rows,
                                             "dmli_minus_global": dmli_gains(rows)},
                                            indent=2) + "\n")
    return csv_path, json_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--output-dir", default="",
                        help="where the CSV / JSON go (default: the config's OUTPUT_DIR)")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, MODEL.WEIGHTS among them")
    args = parser.parse_args(argv)
    opts = list(args.opts or [])
    if args.output_dir:
        opts += ["OUTPUT_DIR", args.output_dir]
    eval_args = train_net.default_argument_parser().parse_args(
        ["--config-file", args.config_file, "--eval-only", *opts, "TEST.DISTANCE", "all"])
    results = train_net.main(eval_args)
    if results is None:  # another rank of a distributed launch: rank 0 evaluates
        return 0
    from fastreid_ms.engine import setup_cfg
    cfg = setup_cfg(eval_args)
    rows = table_rows(results)
    print("\nTest distances (AlignedReID++ paper's table), percent:\n" + format_table(rows),
          flush=True)
    for dataset, gain in dmli_gains(rows).items():
        print(f"DMLI - Global on {dataset}: Rank-1 {gain['Rank-1']:+.1f}, mAP {gain['mAP']:+.1f} "
              "points", flush=True)
    if cfg.OUTPUT_DIR:
        csv_path, json_path = write_outputs(rows, cfg.OUTPUT_DIR, cfg.MODEL.WEIGHTS,
                                            args.config_file)
        print(f"Written: {csv_path}, {json_path}", flush=True)
    return 0


def run(argv=None) -> int:
    user_errors = train_net._user_errors() + (KeyError,)
    try:
        return main(argv)
    except user_errors as exc:
        print(f"\ndistance_table.py: error: {str(exc).strip()}", file=sys.stderr, flush=True)
        return train_net.EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(run())
