#!/usr/bin/env python
"""Speed of the train and test input pipelines: images/s by worker count, against today's
loader and a plain process pool, and the trainer's data wait on the demo.

    python tools/benchmark_data.py                       # 0 1 2 4 workers, demo data wait
    python tools/benchmark_data.py --workers 1 2 --repeats 3 --demo-iters 0
    python tools/benchmark_data.py --output /tmp/benchmark_data.md

The data: the synthetic dataset in Market1501 layout (fastreid_ms's generator; by default
100 train ids x 12 images = 1,200 JPEGs of 64 x 128, 1,220 query + gallery images), drawn
into --root (a temporary folder by default). The transforms: those of --config-file (the
seed's recipe: 256 x 128, random translation, flip, the seed's erasing; test: resize +
normalise). Three pipelines over the same samples; a measurement is images/s of a whole
epoch (train: ceil(images / batch) batches; test: every query and gallery image), from
asking for the first batch to receiving the last, the best of --repeats epochs after one
untimed epoch:

* ``fastreid_ms``: ReidTrainLoader / ReidTestLoader with DATALOADER.NUM_WORKERS = N (0: in
  the consuming thread; N: worker threads; fused decode + transform, fastreid_ms/data/).
* ``GeneratorDataset (before issue 17)``: the loader this project had before (kept here as
  ``LegacyTrainLoader`` / ``LegacyTestLoader``): Pillow decode and the per-step NumPy
  transforms in ``mindspore.dataset.GeneratorDataset(python_multiprocessing=N > 1)`` +
  ``batch``, built anew each epoch as that loader did (its worker start-up counts); it
  has no 0-worker mode and, as before, runs at most one worker per CPU (4 on 2 CPUs runs 2).
* ``process pool (PIL + numpy)``: the plain way (as a torch DataLoader does it, without
  torch): N processes each decode with Pillow, run the same transforms per sample, stack a
  batch and send it back (a pool that persists across epochs); 0 is the same work in this
  process.

Then the demo (configs/Demo/alignedpp_demo.yml, the same synthetic data) trains in one
process: a warm-up epoch (it compiles the step), then epochs of --demo-iters iterations,
each loader setting twice (A B C C B A); reported are the trainer's own ``data_time`` (its
wait for the next batch, from metrics.json) and iteration time, without the first
iteration of each epoch, whose wait (the epoch's pipeline start) is shown apart.
"""
import argparse
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "Market1501", "alignedpp_R50.yml")
DEMO_CONFIG = os.path.join(REPO_ROOT, "configs", "Demo", "alignedpp_demo.yml")
NEW, LEGACY, POOL = "fastreid_ms", "GeneratorDataset (before issue 17)", "process pool (PIL + numpy)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE",
                   help="the transforms (INPUT.*) and the test batch (TEST.IMS_PER_BATCH)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    p.add_argument("--batch-size", type=int, default=32, help="train batch (P x K = 4 x 8)")
    p.add_argument("--num-instance", type=int, default=8)
    p.add_argument("--num-ids", type=int, default=100, help="train (and test) identities")
    p.add_argument("--images-per-id", type=int, default=12)
    p.add_argument("--root", default="", help="DATASETS.ROOT to draw the data into (kept); "
                                              "default: a temporary folder, removed after")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed epochs per measurement (the best counts), after one untimed")
    p.add_argument("--pipelines", nargs="+", default=["new", "legacy", "pool"],
                   choices=["new", "legacy", "pool"])
    p.add_argument("--demo-iters", type=int, default=15,
                   help="demo iterations per loader setting (0: skip the demo)")
    p.add_argument("--demo-workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--demo-rounds", type=int, default=1,
                   help="times each demo setting runs in each direction (A B C C B A ...)")
    p.add_argument("--output", default="", help="also write the report to this file")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- legacy loader
def legacy_read_image(path):
    """The previous read_image: Pillow decode to (H, W, 3) uint8 RGB."""
    from fastreid_ms.data import ImageReadError
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as exc:
        raise ImageReadError(f"Cannot read image '{path}': {type(exc).__name__}: {exc}.") from exc


class _LegacySource:
    """The previous random-access source: sample i = items[order[i]] decoded and
    transformed with a generator seeded by (seed_key..., i)."""

    def __init__(self, items, order, transform, seed_key, label_dtype):
        self.items, self.order, self.transform = items, np.asarray(order, np.int64), transform
        self.seed_key, self.label_dtype = [int(k) for k in seed_key], label_dtype

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        path, pid, camid = self.items[int(self.order[i])]
        rng = np.random.default_rng(self.seed_key + [int(i)])
        image = self.transform(legacy_read_image(path), rng)
        return image, np.array(pid, self.label_dtype), np.array(camid, self.label_dtype)


def legacy_workers(num_workers):
    """The previous num_workers_from_config: at least 1, at most the CPU count (beyond it
    GeneratorDataset refuses)."""
    return max(1, min(int(num_workers), os.cpu_count() or 1))


def _legacy_batches(source, batch_size, drop_remainder, num_workers, output_numpy):
    import mindspore.dataset as msds
    num_workers = legacy_workers(num_workers)
    dataset = msds.GeneratorDataset(source, column_names=["images", "pids", "camids"],
                                    shuffle=False, num_parallel_workers=num_workers,
                                    python_multiprocessing=num_workers > 1)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    iterator = dataset.create_tuple_iterator(num_epochs=1, output_numpy=output_numpy)
    try:
        yield from iterator
    finally:
        iterator.stop()


def legacy_train_loader_class():
    from fastreid_ms.data.build import ReidTrainLoader

    class LegacyTrainLoader(ReidTrainLoader):
        """ReidTrainLoader as it was: GeneratorDataset (processes when num_workers > 1)."""

        def __iter__(self):
            epoch = self.epoch
            self.epoch += 1
            source = _LegacySource(self.items, self.epoch_indices(epoch), self.transform,
                                   (self.seed, epoch, self.rank), np.int32)
            yield from _legacy_batches(source, self.batch_size, True, self.num_workers,
                                       output_numpy=False)
    return LegacyTrainLoader


def legacy_test_batches(items, transform, batch_size, num_workers):
    import mindspore as ms
    source = _LegacySource(items, range(len(items)), transform, (0,), np.int64)
    for images, pids, camids in _legacy_batches(source, batch_size, False, num_workers,
                                                output_numpy=True):
        yield ms.Tensor(images), pids.astype(np.int64), camids.astype(np.int64)


# ----------------------------------------------------------------------------- process pool
_POOL_TRANSFORMS = {}


def _pool_init(config_file):
    from fastreid_ms.config import get_cfg
    from fastreid_ms.data.transforms import build_transforms
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    _POOL_TRANSFORMS[True] = build_transforms(cfg, is_train=True)
    _POOL_TRANSFORMS[False] = build_transforms(cfg, is_train=False)


def _pool_batch(task):
    """One batch the plain way: per sample Pillow decode + the NumPy transforms, stacked."""
    is_train, samples = task
    transform = _POOL_TRANSFORMS[is_train]
    images, pids, camids = [], [], []
    for path, pid, camid, seed in samples:
        images.append(transform(legacy_read_image(path), np.random.default_rng(seed)))
        pids.append(pid)
        camids.append(camid)
    return np.stack(images), np.asarray(pids, np.int64), np.asarray(camids, np.int64)


def _pool_ready(_):
    return os.getpid()


class ProcessPoolBaseline:
    """``batches(tasks)`` made by ``num_workers`` processes (0: in this process)."""

    def __init__(self, config_file, num_workers):
        self.num_workers = num_workers
        self.pool = None
        if num_workers > 0:
            context = multiprocessing.get_context("spawn")
            self.pool = context.Pool(num_workers, initializer=_pool_init,
                                     initargs=(config_file,))
            self.pool.map(_pool_ready, range(num_workers))  # workers up and ready
        else:
            _pool_init(config_file)

    def batches(self, tasks):
        if self.pool is None:
            return map(_pool_batch, tasks)
        return self.pool.imap(_pool_batch, tasks, chunksize=1)

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def pool_tasks(is_train, items, order, batch_size, seed_key, drop_last):
    """Batches of (path, pid, camid, seed) with the loaders' per-position seeds."""
    n = len(order) // batch_size * batch_size if drop_last else len(order)
    tasks = []
    for start in range(0, n, batch_size):
        samples = []
        for p in range(start, min(start + batch_size, n)):
            path, pid, camid = items[order[p]]
            samples.append((path, pid, camid, list(seed_key) + [p]))
        tasks.append((is_train, samples))
    return tasks


# ----------------------------------------------------------------------------- measuring
def images_per_s(make_batches) -> float:
    """Images per second of one whole epoch: from asking for the first batch to receiving
    the last (a loader's per-epoch start-up included)."""
    start = time.perf_counter()
    count = sum(int(batch[0].shape[0]) for batch in make_batches())
    return count / (time.perf_counter() - start)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def environment_line() -> str:
    import mindspore
    import numba
    import PIL
    from fastreid_ms.data import image_io
    from fastreid_ms.utils.threads import default_num_threads
    jpeg = (f"simplejpeg {image_io.simplejpeg.__version__}" if image_io.simplejpeg is not None
            else "no simplejpeg (Pillow decodes)")
    return (f"CPU: {cpu_model()}, {default_num_threads()} usable core(s) (of "
            f"{os.cpu_count()}); Python {platform.python_version()}, MindSpore "
            f"{mindspore.__version__}, Pillow {PIL.__version__}, numba {numba.__version__}, "
            f"{jpeg}")


def draw_dataset(args, root):
    from fastreid_ms.data.datasets import Synthetic
    return Synthetic(root=root, num_train_ids=args.num_ids, num_test_ids=args.num_ids,
                     images_per_id=args.images_per_id, verbose=False)


def pipeline_tables(args, cfg, dataset):
    """{(pipeline, split): {workers: [images/s of each timed epoch]}}.

    Every setting runs one untimed epoch, then the settings take turns, one timed epoch
    each per round (--repeats rounds), so that a change in the machine's speed during the
    run hits them alike.
    """
    from fastreid_ms.data.build import ReidTestLoader, ReidTrainLoader
    from fastreid_ms.data.samplers import IdentitySampler
    from fastreid_ms.data.transforms import build_transforms
    train_items = list(dataset.train)
    test_items = list(dataset.query) + list(dataset.gallery)
    train_tf, test_tf = build_transforms(cfg, True), build_transforms(cfg, False)
    batch, test_batch = args.batch_size, int(cfg.TEST.IMS_PER_BATCH)
    iters = math.ceil(len(train_items) / batch)
    sampler = IdentitySampler(train_items, batch, args.num_instance, 0, 1, 0)
    num_classes = len({pid for _, pid, _ in train_items})
    legacy_train = legacy_train_loader_class() if "legacy" in args.pipelines else None
    order = ReidTrainLoader(train_items, sampler, train_tf, batch, iters, num_classes).epoch_indices(0)

    def epoch_of(loader):
        def batches():
            loader.set_epoch(0)  # the same samples every time
            return iter(loader)
        return batches

    settings, pools = [], []
    for workers in args.workers:
        if "new" in args.pipelines:
            settings.append(((NEW, "train"), workers, epoch_of(ReidTrainLoader(
                train_items, sampler, train_tf, batch, iters, num_classes, workers))))
            test = ReidTestLoader(test_items, test_tf, test_batch, workers)
            settings.append(((NEW, "test"), workers, test.__iter__))
        if "legacy" in args.pipelines and workers > 0:
            settings.append(((LEGACY, "train"), workers, epoch_of(legacy_train(
                train_items, sampler, train_tf, batch, iters, num_classes, workers))))
            settings.append(((LEGACY, "test"), workers, lambda w=workers: legacy_test_batches(
                test_items, test_tf, test_batch, w)))
        if "pool" in args.pipelines:
            pool = ProcessPoolBaseline(args.config_file, workers)
            pools.append(pool)
            train_tasks = pool_tasks(True, train_items, order, batch, (0, 0, 0), True)
            test_tasks = pool_tasks(False, test_items, list(range(len(test_items))), test_batch,
                                    (0,), False)
            settings.append(((POOL, "train"), workers,
                             lambda p=pool, t=train_tasks: p.batches(t)))
            settings.append(((POOL, "test"), workers, lambda p=pool, t=test_tasks: p.batches(t)))
    results = {}
    try:
        for _, _, make in settings:
            images_per_s(make)  # untimed: compilation, file cache, pool start-up
        for round_ in range(args.repeats):
            for key, workers, make in settings:
                results.setdefault(key, {}).setdefault(workers, []).append(images_per_s(make))
            print(f"  round {round_ + 1}/{args.repeats}: " + ", ".join(
                f"{name} {split} {w}: {runs[-1]:.0f}" for (name, split), table in results.items()
                for w, runs in table.items()), flush=True)
    finally:
        for pool in pools:
            pool.close()
    return results


def speed_table(results, workers, split):
    from tabulate import tabulate
    rows = []
    for name in (NEW, LEGACY, POOL):
        table = results.get((name, split))
        if table is None:
            continue
        rows.append([name] + [f"{max(table[w]):.0f}" if w in table else "-" for w in workers])
    return tabulate(rows, headers=["pipeline"] + [f"{w} worker(s)" for w in workers],
                    tablefmt="pipe")


def ratio_lines(results):
    """The issue's targets, from the best epoch of each setting."""
    def best(key):
        return {w: max(runs) for w, runs in results.get(key, {}).items()}
    lines = []
    new_train, new_test = best((NEW, "train")), best((NEW, "test"))
    pool_train, legacy_train, legacy_test = best((POOL, "train")), best((LEGACY, "train")), \
        best((LEGACY, "test"))
    if 2 in new_train and 2 in pool_train:
        lines.append(f"train, 2 workers: {new_train[2] / pool_train[2]:.2f}x the process pool "
                     "at 2 workers (target >= 1.0x)")
    if 2 in new_train and legacy_train:
        top = max(legacy_train, key=legacy_train.get)
        lines.append(f"train, 2 workers: {new_train[2] / legacy_train[top]:.2f}x the previous "
                     f"loader at its best ({top} worker(s), {legacy_train[top]:.0f} images/s; "
                     "target >= 1.5x)")
    if new_test and legacy_test:
        top_new, top_old = max(new_test, key=new_test.get), max(legacy_test, key=legacy_test.get)
        lines.append(f"test: {new_test[top_new] / legacy_test[top_old]:.2f}x the previous "
                     f"loader, best against best ({top_new} vs {top_old} worker(s); target "
                     ">= 3x)")
        if 2 in new_test and 2 in legacy_test:
            lines.append(f"test, 2 workers: {new_test[2] / legacy_test[2]:.2f}x the previous "
                         "loader at 2 workers")
    cores = os.cpu_count() or 1
    for split in ("train", "test"):
        table = results.get((NEW, split), {})
        counts = sorted(w for w in table if w <= cores)
        steps = []
        for fewer, more in zip(counts, counts[1:]):
            ratio = max(table[more]) / max(table[fewer])
            # Slower only beyond the spread of the fewer-worker setting's own epochs.
            verdict = "not slower" if max(table[more]) >= min(table[fewer]) else "SLOWER"
            steps.append(f"{more} vs {fewer}: {ratio:.2f}x ({verdict})")
        if steps:
            lines.append(f"{split}, fastreid_ms, one more worker (up to the {cores} cores): "
                         + "; ".join(steps))
    return lines


# ----------------------------------------------------------------------------- demo data wait
def demo_data_wait(args, root, legacy_workers):
    """Rows (loader, workers, data_time ms, iteration ms, images/s) of the demo trainer."""
    from fastreid_ms.config import get_cfg
    from fastreid_ms.data import build_reid_train_loader
    from fastreid_ms.engine import DefaultTrainer
    from fastreid_ms.utils.env import resolve_device, seed_all_rng, set_mindspore_context
    from fastreid_ms.utils.events import read_metrics

    output_dir = tempfile.mkdtemp(prefix="benchmark_data_demo_")
    settings = [(NEW, w) for w in args.demo_workers]
    if legacy_workers:
        settings.append((LEGACY, legacy_workers))
    # A warm-up epoch (compiles the step), then every setting twice per round, in A B C C B A
    # order, so that a drift of the machine's speed during the run hits them alike.
    plan = [("warm-up", NEW, 1)] + [(kind, kind, w) for kind, w in
                                     (settings + settings[::-1]) * args.demo_rounds]
    cfg = get_cfg()
    cfg.merge_from_file(DEMO_CONFIG)
    cfg.merge_from_list(["DATASETS.ROOT", root, "OUTPUT_DIR", output_dir,
                         "SOLVER.ITERS_PER_EPOCH", str(args.demo_iters),
                         "SOLVER.MAX_EPOCH", str(len(plan)), "SOLVER.LOG_PERIOD", "1",
                         "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", str(args.num_ids),
                         "DATASETS.SYNTHETIC.NUM_TEST_IDS", str(args.num_ids),
                         "DATASETS.SYNTHETIC.IMAGES_PER_ID", str(args.images_per_id)])
    cfg.freeze()
    seed_all_rng(cfg.SEED)
    set_mindspore_context(resolve_device(cfg.MODEL.DEVICE), cfg.MODEL.MODE)
    legacy_cls = legacy_train_loader_class()

    class DemoTrainer(DefaultTrainer):
        """Each epoch uses the loader setting of ``plan``; no evaluation, no checkpoints."""

        def run_epoch(self, epoch):
            _, kind, workers = plan[epoch]
            loader = build_reid_train_loader(self.cfg)
            cls = legacy_cls if kind == LEGACY else type(loader)
            self.train_loader = cls(loader.items, loader.sampler, loader.transform,
                                    loader.batch_size, loader.iters_per_epoch,
                                    loader.num_classes, workers, loader.seed, loader.rank)
            super().run_epoch(epoch)

        def after_epoch(self, epoch):
            pass

    try:
        DemoTrainer(cfg).train()
        records = [r for r in read_metrics(os.path.join(output_dir, "metrics.json"))
                   if "data_time" in r]
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    rows = []
    batch = int(cfg.SOLVER.IMS_PER_BATCH)
    for kind, workers in settings:
        epochs = [e + 1 for e, (_, k, w) in enumerate(plan) if e > 0 and (k, w) == (kind, workers)]
        first = [r for r in records if r["epoch"] in epochs and
                 r["iteration"] == (r["epoch"] - 1) * args.demo_iters + 1]
        steps = [r for r in records if r["epoch"] in epochs and r not in first]
        if not steps:
            continue
        data = statistics.mean(r["data_time"] for r in steps)
        step = statistics.mean(batch / r["images_per_s"] for r in steps)
        start = statistics.mean(r["data_time"] for r in first) if first else float("nan")
        rows.append([kind, workers, f"{data * 1000:.1f}", f"{start * 1000:.0f}",
                     f"{step * 1000:.0f}", f"{batch / step:.0f}"])
    return rows, cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    import fastreid_ms  # noqa: F401  (CPU kernel choice before MindSpore starts)
    from tabulate import tabulate
    from fastreid_ms.config import get_cfg
    from fastreid_ms.utils.file_io import atomic_write_text

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    root = args.root or tempfile.mkdtemp(prefix="benchmark_data_")
    try:
        dataset = draw_dataset(args, root)
        h, w = cfg.INPUT.SIZE_TRAIN
        sample = np.asarray(Image.open(dataset.train[0][0]))
        header = (f"benchmark_data: {' '.join(sys.argv[1:]) or '(defaults)'}\n"
                  f"{environment_line()}\n"
                  f"data: {len(dataset.train)} train / {len(dataset.query) + len(dataset.gallery)} "
                  f"test JPEGs of {sample.shape[1]} x {sample.shape[0]} (synthetic, Market1501 "
                  f"layout); transforms of {os.path.relpath(args.config_file, REPO_ROOT)} "
                  f"({h} x {w}); train batch {args.batch_size}, test batch "
                  f"{cfg.TEST.IMS_PER_BATCH}; images/s of a whole epoch, best of {args.repeats} "
                  "after one untimed")
        print(header, flush=True)
        results = pipeline_tables(args, cfg, dataset)
        report = [header,
                  "Train pipeline (images/s):\n" + speed_table(results, args.workers, "train"),
                  "Test pipeline (images/s):\n" + speed_table(results, args.workers, "test"),
                  "\n".join(ratio_lines(results))]
        if args.demo_iters > 0:
            legacy = results.get((LEGACY, "train"), {})
            legacy_best = max(legacy, key=legacy.get) if legacy else 0
            rows, demo_cfg = demo_data_wait(args, root, legacy_best)
            report.append(
                f"Demo training ({os.path.relpath(DEMO_CONFIG, REPO_ROOT)}, batch "
                f"{demo_cfg.SOLVER.IMS_PER_BATCH} at {demo_cfg.INPUT.SIZE_TRAIN[0]} x "
                f"{demo_cfg.INPUT.SIZE_TRAIN[1]}): the trainer's data_time (its wait for the next "
                f"batch), mean of iterations 2-{args.demo_iters} of {2 * args.demo_rounds} epochs per setting; the "
                "first iteration's wait (the epoch's pipeline start) apart\n"
                + tabulate(rows, headers=["loader", "workers", "data_time ms",
                                          "first batch wait ms", "iteration ms", "images/s"],
                           tablefmt="pipe"))
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    text = "\n\n".join(report) + "\n"
    print("\n" + text, flush=True)
    if args.output:
        atomic_write_text(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
