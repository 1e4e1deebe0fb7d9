#!/usr/bin/env python
"""Train the demo (configs/Demo/alignedpp_demo.yml) and print its results as the README's
table, with the machine it ran on; with several --threads values, one run per value and the
largest difference between them.

    python tools/run_demo.py                        # what `make demo` trains, then the table
    python tools/run_demo.py --threads 1 2          # the same run with 1 and with 2 CPU threads
    python tools/run_demo.py --epochs 20 --output-dir /tmp/demo

Each run is ``tools/train_net.py --config-file configs/Demo/alignedpp_demo.yml`` in its own
process (FASTREID_NUM_THREADS set to the thread count: MindSpore's kernels, BLAS, numba and
the evaluation); the table is read from the run's metrics.json (its final evaluation).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from fastreid_ms.utils.cli import run_cli  # noqa: E402

DEMO_CONFIG = os.path.join("configs", "Demo", "alignedpp_demo.yml")
METRICS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")


def cpu_model() -> str:
    """The CPU's model name and whether it has AVX-512 (lscpu's words, else platform's)."""
    name = platform.processor() or platform.machine()
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = line.split(":", 1)[1]
                if name and flags:
                    break
    except OSError:
        pass
    isa = "AVX-512" if " avx512f" in flags else ("AVX2" if " avx2" in flags else "no AVX2")
    return f"{name}, {os.cpu_count()} CPUs, {isa}"


def final_evaluation(output_dir: str) -> dict:
    """The last evaluation record of ``output_dir``/metrics.json."""
    from fastreid_ms.utils.events import read_metrics
    records = [r for r in read_metrics(os.path.join(output_dir, "metrics.json")) if "mAP" in r]
    if not records:
        raise RuntimeError(f"{output_dir}/metrics.json holds no evaluation: did training finish?")
    return records[-1]


def markdown_table(record: dict) -> str:
    head = "| Synthetic | " + " | ".join(METRICS) + " |"
    rows = [head, "|---" * (len(METRICS) + 1) + "|"]
    for label, prefix in (("global + DMLI local distance", ""), ("after re-ranking", "RK ")):
        if prefix + "mAP" in record:
            rows.append(f"| {label} | " + " | ".join(f"{record[prefix + m]:.1f}" for m in METRICS)
                        + " |")
    return "\n".join(rows)


def train_once(output_dir: str, threads: int, opts) -> dict:
    env = dict(os.environ)
    if threads:
        env["FASTREID_NUM_THREADS"] = str(threads)
    command = [sys.executable, os.path.join(REPO_ROOT, "tools", "train_net.py"), "--config-file",
               os.path.join(REPO_ROOT, DEMO_CONFIG), "OUTPUT_DIR", output_dir, *opts]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the demo run in {output_dir} failed (exit code {proc.returncode}); "
                           f"see {output_dir}/log.txt")
    record = final_evaluation(output_dir)
    record["_seconds"] = time.perf_counter() - start
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="*", default=[0],
                        help="CPU thread counts, one run each (0: the libraries' defaults)")
    parser.add_argument("--epochs", type=int, default=0, help="SOLVER.MAX_EPOCH (default: 80)")
    parser.add_argument("--output-dir", default=os.path.join("logs", "demo", "run_demo"))
    parser.add_argument("opts", nargs="*", help="more config overrides as KEY VALUE pairs")
    args = parser.parse_args(argv)
    opts = list(args.opts) + (["SOLVER.MAX_EPOCH", str(args.epochs)] if args.epochs else [])
    runs = []
    for threads in args.threads:
        out = os.path.abspath(os.path.join(args.output_dir, f"threads_{threads or 'default'}"))
        runs.append((threads, train_once(out, threads, opts)))
    print(f"\nMachine: {cpu_model()}; command: python tools/run_demo.py "
          + " ".join(argv if argv is not None else sys.argv[1:]))
    for threads, record in runs:
        print(f"\nThreads: {threads or 'library defaults'}; epoch {record['epoch']}; "
              f"{record['_seconds']:.0f} s for training and evaluation")
        print(markdown_table(record))
    if len(runs) > 1:
        keys = [p + m for p in ("", "RK ") for m in METRICS if p + m in runs[0][1]]
        spread = {k: max(r[k] for _, r in runs) - min(r[k] for _, r in runs) for k in keys}
        print("\nLargest difference between the runs (points): "
              + ", ".join(f"{k} {v:.2f}" for k, v in spread.items()))
        summary = {"threads": [t for t, _ in runs], "spread": spread}
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "run_demo.py", argv=sys.argv[1:]))
