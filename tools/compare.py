#!/usr/bin/env python
"""Comparison studies: run several configs or override sets, then tabulate their metrics.

Each run is ``tools/train_net.py`` in a subprocess with its own OUTPUT_DIR
(``<output-dir>/<run name>``); its final evaluation is read back from that folder's
metrics.json. One table (Rank-1/5/10, mAP, mINP, the re-ranked "RK" columns when
present, time) is printed and written as CSV and JSON next to the runs.

Several configs (one run each)::

    python tools/compare.py --config-file configs/Demo/alignedpp_demo.yml \\
        --config-file projects/PCB/configs/Demo/pcb_demo.yml --output-dir logs/compare/methods

One config, several override sets ("name: KEY VALUE KEY VALUE ..."), plus overrides
common to all runs at the end::

    python tools/compare.py --config-file configs/Demo/alignedpp_demo.yml \\
        --variant "global: TEST.DISTANCE global" \\
        --variant "dmli: TEST.DISTANCE global_local" \\
        --eval-only MODEL.WEIGHTS logs/demo/model_final.ckpt

With several configs and several variants every config runs with every variant; a bare
variant name (``--variant baseline``) runs the config unchanged. The time column is each
run's wall clock (with ``--collect``: the span of its metrics.json timestamps, which leaves
out the set-up before the first record).

Only read runs that exist already::

    python tools/compare.py --collect logs/a logs/b --output-dir logs/compare/ab
"""
import argparse
import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections import OrderedDict

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, _ROOT)

from fastreid_ms.utils.events import finite_number, read_metrics  # noqa: E402
from fastreid_ms.utils.file_io import atomic_write_text  # noqa: E402

TRAIN_NET = os.path.join(_ROOT, "tools", "train_net.py")
METRIC_KEYS = ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP")
EXTRA_METRIC_KEYS = ("Rank-20",)  # kept in CSV / JSON, left out of the printed table
RERANK_PREFIX = "RK "


class CompareError(ValueError):
    """Bad command-line input or a run folder that cannot be read."""


# ----------------------------------------------------------------------------- records


def is_eval_record(record: dict) -> bool:
    """type "eval", or (records without a type) one that carries re-ID metrics."""
    if record.get("type") == "eval":
        return True
    return record.get("type") in (None, "") and any(k in record for k in METRIC_KEYS)


def final_results(records, since: float = None):
    """The last evaluation of each test dataset, in the order they first appear.

    Returns a list of dicts {"dataset", "epoch", metric: value, ...}; ``since`` (a UNIX
    time) ignores older records, so an OUTPUT_DIR reused by a new run is not mixed up
    with the previous one.
    """
    last = OrderedDict()
    for record in records:
        if since is not None and finite_number(record.get("time")) is not None and record["time"] < since:
            continue
        if not is_eval_record(record):
            continue
        dataset = str(record.get("dataset", "") or "")
        result = {"dataset": dataset, "epoch": record.get("epoch")}
        for key in METRIC_KEYS + EXTRA_METRIC_KEYS:
            for name in (key, RERANK_PREFIX + key):
                value = finite_number(record.get(name))
                if value is not None:
                    result[name] = value
        last[dataset] = result
    return list(last.values())


def run_seconds(records, since: float = None):
    """Training time recorded by the trainer (a "total_time"/"train_time" key, seconds),
    else the span of the record timestamps; None when neither is known."""
    records = [r for r in records
               if since is None or finite_number(r.get("time")) is None or r["time"] >= since]
    for record in reversed(records):
        for key in ("train_time", "total_time"):
            value = finite_number(record.get(key))
            if value is not None:
                return value
    times = [finite_number(r.get("time")) for r in records]
    times = [t for t in times if t is not None]
    if len(times) >= 2:
        return max(times) - min(times)
    return None


def collect_run(name: str, output_dir: str, since: float = None, wall_seconds: float = None,
                extra: dict = None):
    """Rows (one per test dataset) for the run in ``output_dir``; a run without a
    readable evaluation gives one row with its "status" saying why."""
    path = output_dir if output_dir.endswith(".json") else os.path.join(output_dir, "metrics.json")
    base = OrderedDict(name=name, output_dir=os.path.dirname(path) if output_dir.endswith(".json")
                       else output_dir)
    base.update(extra or {})
    if not os.path.isfile(path):
        return [OrderedDict(base, status=f"no metrics.json at {path}")]
    records = read_metrics(path)
    results = final_results(records, since=since)
    seconds = wall_seconds if wall_seconds is not None else run_seconds(records, since=since)
    if not results:
        return [OrderedDict(base, status=f"no evaluation record in {path}", seconds=seconds)]
    rows = []
    for result in results:
        row = OrderedDict(base)
        row["status"] = "ok"
        row["dataset"] = result.pop("dataset")
        row["epoch"] = result.pop("epoch")
        row.update(result)
        row["seconds"] = seconds
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- table / files

def _format_seconds(seconds):
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def table_columns(rows):
    """Metric columns shown: the plain ones, then the RK ones present in any row."""
    columns = [k for k in METRIC_KEYS if any(k in r for r in rows)]
    columns += [RERANK_PREFIX + k for k in METRIC_KEYS if any(RERANK_PREFIX + k in r for r in rows)]
    return columns


def format_table(rows, floatfmt: str = ".2f") -> str:
    """A tabulate table: run, (dataset when several), metrics, time, and the status of failed runs."""
    from tabulate import tabulate
    metrics = table_columns(rows)
    show_dataset = len({r.get("dataset", "") for r in rows}) > 1
    show_status = any(r.get("status") != "ok" for r in rows)
    headers = ["run"] + (["dataset"] if show_dataset else []) + metrics + ["time"]
    headers += ["status"] if show_status else []
    body = []
    for r in rows:
        line = [r["name"]] + ([r.get("dataset", "")] if show_dataset else [])
        line += [r.get(k, "") for k in metrics] + [_format_seconds(r.get("seconds"))]
        line += [r.get("status", "")] if show_status else []
        body.append(line)
    return tabulate(body, headers=headers, tablefmt="pipe", floatfmt=floatfmt, numalign="right")


def csv_text(rows) -> str:
    """All rows as CSV: name, dataset, epoch, every metric seen, seconds, status, output_dir."""
    order = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")
    metrics = [k for k in order if any(k in r for r in rows)]
    metrics += [RERANK_PREFIX + k for k in order if any(RERANK_PREFIX + k in r for r in rows)]
    fields = ["name", "dataset", "epoch"] + metrics + ["seconds", "status", "output_dir"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return buf.getvalue()


def write_outputs(rows, output_dir: str, stem: str = "comparison"):
    """Write <output_dir>/<stem>.csv and .json atomically; returns both paths."""
    csv_path = os.path.join(output_dir, f"{stem}.csv")
    json_path = os.path.join(output_dir, f"{stem}.json")
    atomic_write_text(csv_path, csv_text(rows))
    atomic_write_text(json_path, json.dumps({"runs": rows}, indent=2) + "\n")
    return csv_path, json_path


# ----------------------------------------------------------------------------- run planning

def parse_variant(text: str):
    """'name: KEY VALUE KEY VALUE' -> (name, [KEY, VALUE, ...]); values may be quoted.
    A bare 'name' (no colon, no space) is the config without overrides."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not sep and name and len(name.split()) == 1:  # a bare name: the config as it is
        return name, []
    if not sep or not name:
        raise CompareError(
            f"--variant {text!r}: write it as \"name: KEY VALUE [KEY VALUE ...]\", "
            "e.g. \"lr01: SOLVER.BASE_LR 0.01\".")
    try:
        opts = shlex.split(rest)
    except ValueError as exc:
        raise CompareError(f"--variant {text!r}: cannot split its overrides ({exc}).") from exc
    if len(opts) % 2:
        raise CompareError(
            f"--variant '{name}': overrides come in KEY VALUE pairs; got an odd number of "
            f"items {opts}. Quote a value that holds spaces, e.g. MODEL.LOSSES.NAME "
            "\"['CrossEntropyLoss']\".")
    return name, opts


def _safe_dirname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "run"


def _config_label(path: str, all_paths) -> str:
    """The config file's stem; with its parent folder when two configs share a stem."""
    stem = os.path.splitext(os.path.basename(path))[0]
    stems = [os.path.splitext(os.path.basename(p))[0] for p in all_paths]
    if stems.count(stem) > 1:
        return f"{os.path.basename(os.path.dirname(os.path.abspath(path)))}/{stem}"
    return stem


def plan_runs(config_files, variants, names, common_opts, output_dir):
    """The list of runs: every config x every variant (a missing side counts as one
    empty entry). Each run: {name, config_file, opts, output_dir}."""
    if not config_files:
        raise CompareError("Give at least one --config-file (or use --collect DIR ...).")
    for path in config_files:
        if not os.path.isfile(path):
            raise CompareError(f"--config-file {path}: no such file.")
    parsed = [parse_variant(v) for v in variants] or [(None, [])]
    runs = []
    for cfg_path in config_files:
        for variant_name, variant_opts in parsed:
            if variant_name is None:
                name = _config_label(cfg_path, config_files)
            elif len(config_files) > 1:
                name = f"{_config_label(cfg_path, config_files)}:{variant_name}"
            else:
                name = variant_name
            runs.append({"name": name, "config_file": cfg_path,
                         "opts": list(common_opts) + list(variant_opts)})
    if names:
        if len(names) != len(runs):
            raise CompareError(f"--name was given {len(names)} time(s) for {len(runs)} run(s); "
                               "give one per run or none.")
        for run, name in zip(runs, names):
            run["name"] = name
    seen = {}
    for run in runs:
        if run["name"] in seen:
            raise CompareError(f"Two runs are named '{run['name']}'; give distinct variant names "
                               "or --name values.")
        seen[run["name"]] = True
        run["output_dir"] = os.path.join(output_dir, _safe_dirname(run["name"]))
    return runs


def check_config(run):
    """Merge the run's config and overrides in this process, so that a typo fails before
    any run starts (imports the config's PLUGINS)."""
    from fastreid_ms.config import get_cfg
    cfg = get_cfg()
    try:
        cfg.merge_from_file(run["config_file"])
        cfg.merge_from_list(run["opts"])
    except Exception as exc:  # noqa: BLE001 - reported with the run's name, then stop
        raise CompareError(f"Run '{run['name']}' ({run['config_file']} with overrides "
                           f"{run['opts']}): {exc}") from exc
    return cfg


def train_command(run, eval_only: bool = False, python: str = None):
    """The tools/train_net.py command line of ``run``."""
    cmd = [python or sys.executable, TRAIN_NET, "--config-file", run["config_file"]]
    if eval_only:
        cmd.append("--eval-only")
    return cmd + list(run["opts"]) + ["OUTPUT_DIR", run["output_dir"]]


def execute_run(run, eval_only: bool = False, verbose: bool = False):
    """Run one training / evaluation; its console output goes to OUTPUT_DIR/compare_console.txt
    (and to this console with ``verbose``). Returns (return code, wall seconds, start time)."""
    os.makedirs(run["output_dir"], exist_ok=True)
    console_path = os.path.join(run["output_dir"], "compare_console.txt")
    cmd = train_command(run, eval_only)
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.time()
    with open(console_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            if verbose:
                sys.stdout.write(line)
        rc = proc.wait()
    return rc, time.time() - start, start


# ----------------------------------------------------------------------------- main

def build_parser():
    parser = argparse.ArgumentParser(
        description="Run several configs / override sets through tools/train_net.py and "
                    "tabulate their final metrics (or --collect existing runs).",
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", action="append", default=[], metavar="FILE",
                        help="a config to run (repeat for several)")
    parser.add_argument("--variant", action="append", default=[], metavar="'NAME: KEY VAL ...'",
                        help="an override set applied on top of each config (repeat for several)")
    parser.add_argument("--name", action="append", default=[],
                        help="run names, one per run in order (default: variant name or config stem)")
    parser.add_argument("--collect", nargs="+", metavar="DIR", default=None,
                        help="only read these existing OUTPUT_DIRs (or metrics.json files)")
    parser.add_argument("--output-dir", default="logs/compare",
                        help="folder of the runs (one sub-folder each) and of comparison.csv/.json")
    parser.add_argument("--eval-only", action="store_true",
                        help="pass --eval-only to train_net (give MODEL.WEIGHTS as an override)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="do not rerun a run whose OUTPUT_DIR already has a final evaluation")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    parser.add_argument("--verbose", action="store_true", help="show the runs' console output")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="overrides common to all runs, KEY VALUE pairs (variants win)")
    return parser


def _collect_mode(args):
    rows = []
    names = args.name or []
    if names and len(names) != len(args.collect):
        raise CompareError(f"--name was given {len(names)} time(s) for {len(args.collect)} "
                           "--collect folder(s); give one per folder or none.")
    for i, folder in enumerate(args.collect):
        stripped = folder.rstrip("/")
        if stripped.endswith(".json"):
            stripped = os.path.dirname(stripped) or "."
        name = names[i] if names else (os.path.basename(stripped) or stripped)
        rows.extend(collect_run(name, folder.rstrip("/")))
    return rows


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    opts = list(args.opts or [])
    if opts and opts[0] == "--":
        opts = opts[1:]
    try:
        if args.collect is not None:
            if args.config_file or args.variant:
                raise CompareError("--collect only reads existing runs; drop --config-file / "
                                   "--variant, or drop --collect to run them.")
            rows = _collect_mode(args)
        else:
            flags = [o for o in opts[0::2] if o.startswith("--")]
            if flags:
                raise CompareError(f"{flags[0]} comes after the KEY VALUE overrides {opts}: give "
                                   "the options (--config-file, --variant, ...) first and the "
                                   "overrides common to all runs at the end.")
            if len(opts) % 2:
                raise CompareError(f"Common overrides come in KEY VALUE pairs; got {opts}.")
            runs = plan_runs(args.config_file, args.variant, args.name, opts, args.output_dir)
            for run in runs:
                check_config(run)
            if args.dry_run:
                for run in runs:
                    print(f"[{run['name']}] " + " ".join(shlex.quote(c) for c in
                                                         train_command(run, args.eval_only)))
                return 0
            rows = []
            for i, run in enumerate(runs, 1):
                extra = {"config_file": run["config_file"], "overrides": " ".join(run["opts"])}
                if args.skip_existing:
                    existing = collect_run(run["name"], run["output_dir"], extra=extra)
                    if all(r["status"] == "ok" for r in existing):
                        print(f"[{i}/{len(runs)}] {run['name']}: kept the existing results in "
                              f"{run['output_dir']}", flush=True)
                        rows.extend(existing)
                        continue
                print(f"[{i}/{len(runs)}] {run['name']}: running into {run['output_dir']} ...",
                      flush=True)
                rc, seconds, start = execute_run(run, args.eval_only, args.verbose)
                console = os.path.join(run["output_dir"], "compare_console.txt")
                if rc != 0:
                    print(f"[{i}/{len(runs)}] {run['name']}: FAILED (exit code {rc}) after "
                          f"{seconds:.0f} s; see {console}", flush=True)
                    rows.append(OrderedDict(name=run["name"], output_dir=run["output_dir"], **extra,
                                            status=f"failed (exit code {rc}), see {console}",
                                            seconds=seconds))
                    continue
                run_rows = collect_run(run["name"], run["output_dir"], since=start - 1.0,
                                       wall_seconds=seconds, extra=extra)
                print(f"[{i}/{len(runs)}] {run['name']}: done in {seconds:.0f} s", flush=True)
                rows.extend(run_rows)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("error: nothing to compare", file=sys.stderr)
        return 2
    print(format_table(rows))
    csv_path, json_path = write_outputs(rows, args.output_dir)
    print(f"Wrote {csv_path} and {json_path}")
    return 0 if all(r.get("status") == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
