#!/usr/bin/env python
"""Speed of the training step: images/s and compile time per execution mode and AMP level,
and the cost of AlignedReID++'s local branch (DMLI local triplet) against the same
backbone trained with cross entropy + global triplet only.

    python tools/benchmark_train.py --config-file configs/Market1501/alignedpp_R50.yml
    python tools/benchmark_train.py --small                 # ResNet-18/16 at 128x64: minutes on a CPU
    python tools/benchmark_train.py --small --modes GRAPH --amp O0 O2 --iters 20
    python tools/benchmark_train.py --config-file ... --no-matrix --iters 3   # DMLI cost only

Batches are random tensors shaped like one device's training batch (IMS_PER_BATCH / --devices
images of INPUT.SIZE_TRAIN, P identities x NUM_INSTANCE; --devices defaults to the recipe's,
e.g. 32 images for the seed's 8-NPU config), so no dataset is needed. Step time is
the median over --iters timed steps after --warmup steps (wall clock, and the process's CPU
time, which a busy shared machine disturbs less); compile time is the first step minus the
median. The DMLI comparison builds both models and alternates their steps, so that a
shared, busy machine slows both alike, and states the overhead in CPU time and wall time.
"""
import argparse
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import fastreid_ms  # noqa: E402,F401  (CPU kernel choice before MindSpore starts)

DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "Market1501", "alignedpp_R50.yml")
SMALL = ["MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.BASE_WIDTH", "16",
         "MODEL.BACKBONE.FEAT_DIM", "128", "INPUT.SIZE_TRAIN", "[128, 64]"]
BASELINE_HEAD = "EmbeddingHead"
BASELINE_LOSSES = ["CrossEntropyLoss", "TripletLoss"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE")
    p.add_argument("--modes", nargs="+", default=["GRAPH", "PYNATIVE"],
                   choices=["GRAPH", "PYNATIVE"])
    p.add_argument("--amp", nargs="+", default=["O0", "O1", "O2", "O3"],
                   choices=["O0", "O1", "O2", "O3"])
    p.add_argument("--iters", type=int, default=5, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    p.add_argument("--num-classes", type=int, default=751, help="classifier size (Market1501: 751)")
    p.add_argument("--devices", type=int, default=0,
                   help="devices the global batch is split over (default: RECIPE.NUM_DEVICES "
                        "of the config, 1 without a recipe); the step runs one device's share")
    p.add_argument("--small", action="store_true",
                   help="ResNet-18 with base width 16 at 128x64 (" + " ".join(SMALL) + ")")
    p.add_argument("--no-matrix", action="store_true", help="skip the mode x AMP table")
    p.add_argument("--no-dmli", action="store_true", help="skip the local-branch cost")
    p.add_argument("--dmli-amp", default="O0", choices=["O0", "O1", "O2", "O3"],
                   help="AMP level of the DMLI comparison (GRAPH mode)")
    p.add_argument("--output", default="", help="also write the report to this file")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p.parse_args(argv)


def load_cfg(args):
    from fastreid_ms.config import get_cfg
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list((SMALL if args.small else []) + list(args.opts or []))
    cfg.MODEL.HEADS.NUM_CLASSES = int(args.num_classes)
    cfg.MODEL.BACKBONE.PRETRAIN = False
    from fastreid_ms.data.samplers.identity_sampler import check_batch_divisibility
    from fastreid_ms.engine.recipe import recipe_devices
    devices = args.devices or recipe_devices(cfg)
    ids = check_batch_divisibility(int(cfg.SOLVER.IMS_PER_BATCH), int(cfg.DATALOADER.NUM_INSTANCE),
                                   devices)
    cfg.SOLVER.IMS_PER_BATCH = ids * int(cfg.DATALOADER.NUM_INSTANCE)  # one device's batch
    return cfg


def baseline_variant(cfg):
    """The same backbone with EmbeddingHead and CE + global triplet only."""
    base = cfg.clone()
    base.MODEL.HEADS.NAME = BASELINE_HEAD
    base.MODEL.HEADS.EMBEDDING_DIM = 0
    base.MODEL.HEADS.WITH_BNNECK = False
    base.MODEL.LOSSES.NAME = list(BASELINE_LOSSES)
    return base


def make_batch(cfg, seed=0):
    """Random images (B, 3, H, W) float32 and P x K int32 labels, B = IMS_PER_BATCH."""
    import numpy as np
    import mindspore as ms
    batch = int(cfg.SOLVER.IMS_PER_BATCH)
    k = int(cfg.DATALOADER.NUM_INSTANCE)
    if batch % k:
        raise SystemExit(f"SOLVER.IMS_PER_BATCH {batch} is not a multiple of "
                         f"DATALOADER.NUM_INSTANCE {k}.")
    h, w = (int(v) for v in cfg.INPUT.SIZE_TRAIN)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
    labels = np.repeat(np.arange(batch // k) % cfg.MODEL.HEADS.NUM_CLASSES, k).astype(np.int32)
    return ms.Tensor(images), ms.Tensor(labels)


class StepUnderTest:
    """A model + optimizer + compiled (or eager) step built from ``cfg``."""

    def __init__(self, cfg, mode: str, level: str):
        import mindspore as ms
        from fastreid_ms.engine.train_step import TrainStep, apply_amp, build_loss_scaler
        from fastreid_ms.modeling import build_model
        from fastreid_ms.solver import build_optimizer
        ms.set_context(mode=ms.GRAPH_MODE if mode == "GRAPH" else ms.PYNATIVE_MODE)
        ms.set_seed(0)
        self.mode, self.level = mode, level
        model = apply_amp(build_model(cfg), level)
        model.set_train(True)
        optimizer = build_optimizer(cfg, model, iters_per_epoch=100)
        self.step = TrainStep(model, optimizer, build_loss_scaler(level, cfg.SOLVER.AMP),
                              jit=mode == "GRAPH")
        self.times = []
        self.cpu_times = []
        self.first = None
        self.loss = float("nan")

    def run(self, images, labels, record: bool = False) -> float:
        """One step; with ``record`` its wall and CPU time join the measurements."""
        import mindspore as ms
        ms.set_context(mode=ms.GRAPH_MODE if self.mode == "GRAPH" else ms.PYNATIVE_MODE)
        start, cpu_start = time.perf_counter(), time.process_time()
        losses, _, _ = self.step(images, labels)
        total = sum(float(v.asnumpy()) for v in losses.values())  # waits for the step
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        self.loss = total
        if self.first is None:
            self.first = elapsed
        if record:
            self.times.append(elapsed)
            self.cpu_times.append(cpu)
        return elapsed

    def median(self) -> float:
        return statistics.median(self.times)

    def cpu_median(self) -> float:
        return statistics.median(self.cpu_times)


def measure(cfg, mode, level, iters, warmup):
    images, labels = make_batch(cfg)
    sut = StepUnderTest(cfg, mode, level)
    sut.run(images, labels)
    for _ in range(warmup):
        sut.run(images, labels)
    for _ in range(iters):
        sut.run(images, labels, record=True)
    return sut


def matrix_rows(cfg, args):
    rows = []
    batch = int(cfg.SOLVER.IMS_PER_BATCH)
    for mode in args.modes:
        for level in args.amp:
            sut = measure(cfg, mode, level, args.iters, args.warmup)
            step = sut.median()
            rows.append([mode, level, f"{max(sut.first - step, 0.0):.1f}", f"{step * 1000:.0f}",
                         f"{batch / step:.1f}", f"{sut.cpu_median() * 1000:.0f}",
                         f"{sut.loss:.3f}"])
            print(f"  {mode:8s} {level}: {step * 1000:.0f} ms/step, {batch / step:.1f} images/s, "
                  f"first step {sut.first:.1f} s", flush=True)
    return rows


def dmli_rows(cfg, args):
    batch = int(cfg.SOLVER.IMS_PER_BATCH)
    images, labels = make_batch(cfg)
    full = StepUnderTest(cfg, "GRAPH", args.dmli_amp)
    base = StepUnderTest(baseline_variant(cfg), "GRAPH", args.dmli_amp)
    for sut in (full, base):
        sut.run(images, labels)
        for _ in range(args.warmup):
            sut.run(images, labels)
    for _ in range(args.iters):  # alternate, so that machine load hits both alike
        full.run(images, labels, record=True)
        base.run(images, labels, record=True)
    t_full, t_base = full.median(), base.median()
    c_full, c_base = full.cpu_median(), base.cpu_median()
    overhead_cpu = (c_full / c_base - 1.0) * 100.0
    overhead_wall = (t_full / t_base - 1.0) * 100.0
    names = "+".join(cfg.MODEL.LOSSES.NAME)
    rows = [
        [f"{cfg.MODEL.HEADS.NAME} ({names})", f"{t_full * 1000:.0f}", f"{batch / t_full:.1f}",
         f"{c_full * 1000:.0f}", f"{full.first - t_full:.1f}"],
        [f"{BASELINE_HEAD} ({'+'.join(BASELINE_LOSSES)})", f"{t_base * 1000:.0f}",
         f"{batch / t_base:.1f}", f"{c_base * 1000:.0f}", f"{base.first - t_base:.1f}"],
    ]
    return rows, overhead_cpu, overhead_wall


def main(argv=None) -> int:
    args = parse_args(argv)
    from tabulate import tabulate
    import mindspore as ms
    from fastreid_ms.utils.env import CPU_ISA_NOTE, resolve_device, set_mindspore_context
    from fastreid_ms.utils.file_io import atomic_write_text

    cfg = load_cfg(args)
    device = resolve_device(cfg.MODEL.DEVICE)
    set_mindspore_context(device, "GRAPH")
    h, w = cfg.INPUT.SIZE_TRAIN
    header = (f"benchmark_train: {os.path.relpath(args.config_file, REPO_ROOT) if args.config_file else 'defaults'}"
              f"{' --small' if args.small else ''} {' '.join(args.opts or [])}\n"
              f"device {device}, MindSpore {ms.__version__}, CPU kernels: {CPU_ISA_NOTE['message']}\n"
              f"ResNet-{cfg.MODEL.BACKBONE.DEPTH} (base width {cfg.MODEL.BACKBONE.BASE_WIDTH}), "
              f"head {cfg.MODEL.HEADS.NAME}, losses {list(cfg.MODEL.LOSSES.NAME)}, "
              f"batch {cfg.SOLVER.IMS_PER_BATCH} x 3 x {h} x {w}, {cfg.MODEL.HEADS.NUM_CLASSES} classes, "
              f"median of {args.iters} steps after {args.warmup} warm-up step(s)")
    print(header, flush=True)
    report = [header]
    if not args.no_matrix:
        rows = matrix_rows(cfg, args)
        table = tabulate(rows, headers=["mode", "AMP", "compile s", "ms/step", "images/s",
                                        "CPU ms/step", "loss"], tablefmt="pipe")
        report.append("Train step by execution mode and AMP level:\n" + table)
        print("\n" + report[-1], flush=True)
    if not args.no_dmli:
        rows, overhead_cpu, overhead_wall = dmli_rows(cfg, args)
        table = tabulate(rows, headers=["model (GRAPH, " + args.dmli_amp + ")", "ms/step",
                                        "images/s", "CPU ms/step", "compile s"], tablefmt="pipe")
        verdict = "within" if overhead_cpu <= 10.0 else "ABOVE"
        report.append("Cost of the local branch + DMLI local triplet (same backbone, steps "
                      f"alternated):\n{table}\nlocal branch + loss add {overhead_cpu:+.1f}% CPU time "
                      f"({overhead_wall:+.1f}% wall time) to the step ({verdict} the 10% goal)")
        print("\n" + report[-1], flush=True)
    if args.output:
        atomic_write_text(args.output, "\n\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
