#!/usr/bin/env python
"""Training curves: turn OUTPUT_DIR/metrics.json into a PNG.

Three panels: the loss terms (per iteration when the records carry one, else per
epoch), the learning rate, and the evaluation metrics per epoch (Rank-1/5/10, mAP,
mINP; re-ranked ones dashed).

    python tools/plot_metrics.py logs/demo/alignedpp_demo            # -> .../metrics.png
    python tools/plot_metrics.py logs/a/metrics.json -o curves.png

Needs matplotlib: ``pip install fastreid_ms[plot]`` (or ``pip install -e ".[plot]"``).
"""
import argparse
import os
import sys

# Run from a checkout without `pip install -e .`: make the repository root importable.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from fastreid_ms.utils.events import finite_number, read_metrics  # noqa: E402
from fastreid_ms.utils.file_io import atomic_path  # noqa: E402

EVAL_KEYS = ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP")
RERANK_PREFIX = "RK "
MATPLOTLIB_HINT = ("tools/plot_metrics.py needs matplotlib, which is not installed. "
                   "Install it with:  pip install fastreid_ms[plot]   "
                   "(from a checkout: pip install -e \".[plot]\", or pip install matplotlib)")


class MetricsFileError(ValueError):
    """metrics.json is missing, empty or holds nothing to plot."""


def resolve_metrics_path(path: str) -> str:
    """A metrics.json path, or a folder holding one (an OUTPUT_DIR)."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.json")
    if not os.path.isfile(path):
        raise MetricsFileError(
            f"No metrics file at {path}. Give a training OUTPUT_DIR or its metrics.json "
            "(tools/train_net.py writes OUTPUT_DIR/metrics.json while it trains).")
    return path


def is_eval_record(record: dict) -> bool:
    """An evaluation record: type "eval", or one that carries re-ID metrics."""
    if record.get("type") == "eval":
        return True
    if record.get("type") not in (None, ""):
        return False
    return any(k in record for k in EVAL_KEYS)


def is_train_record(record: dict) -> bool:
    """A training-period record: it carries loss terms or a learning rate."""
    if is_eval_record(record):
        return False
    if record.get("type") not in (None, "", "train"):
        return False
    return any(_is_loss_key(k) for k in record) or "lr" in record


# Keys that start like a loss but are not one (the AMP loss scale).
NOT_LOSSES = ("loss_scale",)


def _is_loss_key(key: str) -> bool:
    return (key.startswith("loss") or key == "total_loss") and key not in NOT_LOSSES


def _train_x(record: dict, iters_per_epoch):
    """(x, unit): the global iteration when known, else the epoch (fractional if possible)."""
    for key in ("iteration", "global_iter", "global_step", "step"):
        if finite_number(record.get(key)) is not None:
            return finite_number(record[key]), "iteration"
    epoch = finite_number(record.get("epoch"))
    it = finite_number(record.get("iter"))
    if epoch is not None and it is not None and iters_per_epoch:
        return epoch * iters_per_epoch + it, "iteration"
    if epoch is not None:
        return epoch, "epoch"
    return None, None


def training_curves(records):
    """{"x_label": str, "losses": {name: (xs, ys)}, "lr": (xs, ys)} from the train records."""
    train = [r for r in records if is_train_record(r)]
    iters = None
    for r in train:
        n = finite_number(r.get("iters_per_epoch"))
        if n:
            iters = n
    losses, lr_x, lr_y, units = {}, [], [], set()
    for index, r in enumerate(train):
        x, unit = _train_x(r, iters)
        if x is None:
            x, unit = float(index), "record"
        units.add(unit)
        for key, value in r.items():
            y = finite_number(value)
            if y is None:
                continue
            if _is_loss_key(key):
                xs, ys = losses.setdefault(key, ([], []))
                xs.append(x)
                ys.append(y)
            elif key == "lr":
                lr_x.append(x)
                lr_y.append(y)
    x_label = "iteration" if units == {"iteration"} else (units.pop() if len(units) == 1 else "record")
    return {"x_label": x_label, "losses": losses, "lr": (lr_x, lr_y)}


def eval_curves(records):
    """{dataset or "": {metric: (epochs, values)}} from the evaluation records; an eval
    record without an epoch gets the last training epoch seen before it."""
    curves = {}
    last_epoch = 0.0
    for r in records:
        epoch = finite_number(r.get("epoch"))
        if not is_eval_record(r):
            if epoch is not None:
                last_epoch = epoch
            continue
        x = epoch if epoch is not None else last_epoch
        per_dataset = curves.setdefault(str(r.get("dataset", "") or ""), {})
        for key in EVAL_KEYS + tuple(RERANK_PREFIX + k for k in EVAL_KEYS):
            y = finite_number(r.get(key))
            if y is None:
                continue
            xs, ys = per_dataset.setdefault(key, ([], []))
            xs.append(x)
            ys.append(y)
    return {k: v for k, v in curves.items() if v}


def plot_metrics(metrics_path: str, out_path: str = None, title: str = None, dpi: int = 100) -> str:
    """Write the PNG of ``metrics_path`` (a metrics.json or its folder); returns its path."""
    metrics_path = resolve_metrics_path(metrics_path)
    records = read_metrics(metrics_path)
    if not records:
        raise MetricsFileError(
            f"{metrics_path} holds no records (empty, or no complete line). It fills while "
            "tools/train_net.py trains: wait for the first log period, or check the run's log.txt.")
    train = training_curves(records)
    evals = eval_curves(records)
    if not train["losses"] and not train["lr"][0] and not evals:
        raise MetricsFileError(
            f"{metrics_path} has {len(records)} record(s) but no loss, learning-rate or "
            "evaluation values to plot (expected keys like 'loss_cls', 'lr', 'Rank-1', 'mAP').")
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(MATPLOTLIB_HINT) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_path = out_path or os.path.join(os.path.dirname(os.path.abspath(metrics_path)), "metrics.png")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax_loss, ax_lr, ax_eval = axes

    terms = sorted(k for k in train["losses"] if k != "total_loss")
    for name in terms:
        xs, ys = train["losses"][name]
        ax_loss.plot(xs, ys, label=name, linewidth=1.2)
    if "total_loss" in train["losses"] and len(terms) != 1:  # one term: the total is that term
        xs, ys = train["losses"]["total_loss"]
        ax_loss.plot(xs, ys, label="total_loss", color="black", linestyle="--", linewidth=1.0)
    _finish(ax_loss, "losses", train["x_label"], "loss", bool(train["losses"]))

    lr_x, lr_y = train["lr"]
    if lr_x:
        ax_lr.plot(lr_x, lr_y, color="tab:purple", linewidth=1.2, label="lr")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    _finish(ax_lr, "learning rate", train["x_label"], "lr", bool(lr_x), legend=False)

    colors = {k: f"C{i}" for i, k in enumerate(EVAL_KEYS)}
    several = len(evals) > 1
    for dataset, metrics in sorted(evals.items()):
        for key, (xs, ys) in metrics.items():
            base = key[len(RERANK_PREFIX):] if key.startswith(RERANK_PREFIX) else key
            label = f"{dataset} {key}" if several else key
            rk = key.startswith(RERANK_PREFIX)  # re-ranked: dashed, open squares
            ax_eval.plot(xs, ys, marker="s" if rk else "o", markersize=5 if rk else 3,
                         fillstyle="none" if rk else "full", color=colors[base],
                         linestyle="--" if rk else "-", label=label)
    _finish(ax_eval, "evaluation", "epoch", "%", bool(evals))

    fig.suptitle(title or os.path.basename(os.path.dirname(os.path.abspath(metrics_path))))
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return out_path


def _finish(ax, title, xlabel, ylabel, has_data, legend=True):
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if not has_data:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes,
                color="gray")
    elif legend:
        ax.legend(fontsize=8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", help="a metrics.json file or the OUTPUT_DIR holding it")
    parser.add_argument("-o", "--output", default=None,
                        help="PNG to write (default: metrics.png next to metrics.json)")
    parser.add_argument("--title", default=None, help="figure title (default: the run folder)")
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        path = plot_metrics(args.metrics, args.output, title=args.title, dpi=args.dpi)
    except (MetricsFileError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
