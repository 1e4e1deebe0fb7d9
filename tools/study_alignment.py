#!/usr/bin/env python
"""Does alignment matter? The AlignedReID++ study on the synthetic dataset.

The synthetic boxes shift and scale each person vertically, so the parts of two images of
one identity are misaligned, as with detector boxes. This study trains, from the same
config (default: the demo), two models:

* ``alignedpp``: AlignedReID++ (CE + global triplet + DMLI local triplet);
* ``global_losses``: the same backbone and head trained with CE + global triplet only;

then evaluates each with the test distances that the paper compares: global only, local
aligned by DMLI, local unaligned (part i with part i), global + DMLI, global + unaligned.
Everything runs through ``tools/compare.py`` (one train_net.py process per run), and one
table is printed and written as CSV / JSON to ``--output-dir``.

    python tools/study_alignment.py                       # ~15 min on a 2-core CPU
    python tools/study_alignment.py --skip-existing       # reuse finished training runs
"""
import argparse
import os
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)

import compare  # noqa: E402  (tools/compare.py)

TRAININGS = [
    ("alignedpp", []),
    ("global_losses", ["MODEL.LOSSES.NAME", '["CrossEntropyLoss", "TripletLoss"]']),
]
DISTANCES = [
    ("global", ["TEST.DISTANCE", "global"]),
    ("local_dmli", ["TEST.DISTANCE", "local", "TEST.LOCAL.ALIGNED", "True"]),
    ("local_unaligned", ["TEST.DISTANCE", "local", "TEST.LOCAL.ALIGNED", "False"]),
    ("global+dmli", ["TEST.DISTANCE", "global_local", "TEST.LOCAL.ALIGNED", "True"]),
    ("global+unaligned", ["TEST.DISTANCE", "global_local", "TEST.LOCAL.ALIGNED", "False"]),
]


def _variant(name, opts):
    import shlex
    return f"{name}: " + " ".join(shlex.quote(o) for o in opts) if opts else name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default="configs/Demo/alignedpp_demo.yml")
    parser.add_argument("--output-dir", default="logs/study_alignment")
    parser.add_argument("--skip-existing", action="store_true",
                        help="keep training runs that already finished in --output-dir")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="overrides for every run (e.g. SOLVER.MAX_EPOCH 40)")
    args = parser.parse_args(argv)
    common = ["TEST.RERANK.ENABLED", "False"] + list(args.opts or [])

    train_dir = os.path.join(args.output_dir, "train")
    train_argv = ["--config-file", args.config_file, "--output-dir", train_dir]
    for name, opts in TRAININGS:
        train_argv += ["--variant", _variant(name, opts)]
    if args.skip_existing:
        train_argv.append("--skip-existing")
    rc = compare.main(train_argv + common)
    if rc != 0:
        return rc

    rows = []
    for model_name, train_opts in TRAININGS:
        weights = os.path.join(train_dir, model_name, "model_final.ckpt")
        eval_dir = os.path.join(args.output_dir, f"eval_{model_name}")
        eval_argv = ["--config-file", args.config_file, "--output-dir", eval_dir, "--eval-only"]
        for name, opts in DISTANCES:
            eval_argv += ["--variant", _variant(f"{model_name}/{name}", opts)]
        rc = compare.main(eval_argv + common + train_opts + ["MODEL.WEIGHTS", weights])
        if rc != 0:
            return rc
        for name, _ in DISTANCES:
            rows.extend(compare.collect_run(f"{model_name} / {name}",
                                            os.path.join(eval_dir, compare._safe_dirname(
                                                f"{model_name}/{name}"))))
    print("\nAlignment study (same data, same backbone; test distance per row):")
    print(compare.format_table(rows))
    csv_path, json_path = compare.write_outputs(rows, args.output_dir, stem="study_alignment")
    print(f"Wrote {csv_path} and {json_path}")
    return 0 if all(r.get("status") == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
