"""Build datasets from the config, and the train / test loaders.

Each epoch the train loader asks its sampler for this rank's indices and makes batches of
them in worker threads (loader.py): a sample is decoded and transformed with a generator
seeded by (SEED, epoch, rank, position), so it is a deterministic function of those four
whatever DATALOADER.NUM_WORKERS is, and ``--resume`` continues exactly. The pipelines of
:func:`build_transforms` run fused (decode, then one compiled pass per sample that writes
the normalised tensor into the batch, releasing the GIL). A file that cannot be read stops
the iteration with :class:`ImageReadError` naming it, also when a worker thread read it.

DATALOADER.NUM_WORKERS: -1 (the default) picks the CPUs this process may use divided among
the training processes on this machine (logged); 0 loads in the training thread; N >= 1
uses N threads.
"""
import math
from typing import List, Optional, Tuple

import numpy as np

from ..utils import comm
from ..utils.logger import get_logger
from .datasets import DATASET_REGISTRY
from .datasets.partial import partial_base_name, partial_from_config
from .image_io import ImageReadError, read_image
from .loader import NUM_WORKERS_AUTO, BatchMaker, default_num_workers, iterate_batches
from .samplers import SAMPLER_REGISTRY, InferenceSampler
from .transforms import build_transforms

__all__ = ["ImageReadError", "ReidTestLoader", "ReidTrainLoader", "build_dataset",
           "build_reid_test_loader", "build_reid_train_loader", "num_workers_from_config",
           "read_image"]

Item = Tuple[str, int, int]


def build_dataset(cfg, name: str):
    """The dataset registered as ``name``, built from ``cfg`` (DATASETS.ROOT and the
    dataset's own keys). A missing or malformed folder raises DatasetLayoutError.
    ``"<Name>-Partial"`` is ``<Name>`` with DATASETS.PARTIAL's crops (datasets/partial.py)."""
    base = partial_base_name(name)
    if base is not None and name not in DATASET_REGISTRY:
        return partial_from_config(cfg, DATASET_REGISTRY.get(base).from_config(cfg), name)
    return DATASET_REGISTRY.get(name).from_config(cfg)


def num_workers_from_config(cfg, world_size: Optional[int] = None) -> int:
    """Loader threads from DATALOADER.NUM_WORKERS: N >= 0 as given (0: load in the
    calling thread), -1: :func:`default_num_workers` for this machine and the job's
    ``world_size`` (default: the launch's). The choice is logged."""
    value = int(cfg.DATALOADER.NUM_WORKERS)
    if value < NUM_WORKERS_AUTO:
        raise ValueError(f"DATALOADER.NUM_WORKERS must be -1 (one per CPU of this process), 0 "
                         f"(load in the training thread) or a positive count, got {value}.")
    if value != NUM_WORKERS_AUTO:
        get_logger().info("Data loader threads: %d (DATALOADER.NUM_WORKERS)", value)
        return value
    world_size = comm.get_world_size() if world_size is None else int(world_size)
    workers, reason = default_num_workers(world_size)
    get_logger().info("Data loader threads: %d (DATALOADER.NUM_WORKERS -1: %s)", workers, reason)
    return workers


def _as_tensor(array: np.ndarray):
    """A mindspore Tensor sharing ``array``'s memory (each batch array is new, never reused)."""
    import mindspore as ms
    return ms.Tensor.from_numpy(array)


class ReidTrainLoader:
    """One epoch of training batches per iteration.

    Yields ``(images, pids, camids)`` mindspore Tensors: float32 (B_local, 3, H, W),
    int32 (B_local,), int32 (B_local,). ``set_epoch(e)`` makes the next iteration epoch
    ``e``; each iteration then moves on to the next epoch. The order is a deterministic
    function of the seed, the epoch and the rank, and so is every sample (its transform's
    generator is seeded by (seed, epoch, rank, position)), whatever ``num_workers`` is:
    0 makes each batch in the iterating thread, N >= 1 in N threads ahead of it.
    """

    def __init__(self, items: List[Item], sampler, transform, batch_size: int,
                 iters_per_epoch: int, num_classes: int, num_workers: int = 1, seed: int = 0,
                 rank: int = 0):
        self.items = items
        self.sampler = sampler
        self.transform = transform
        self.batch_size = int(batch_size)
        self.iters_per_epoch = int(iters_per_epoch)
        self.num_classes = int(num_classes)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.rank = int(rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.iters_per_epoch

    def epoch_indices(self, epoch: int) -> List[int]:
        """The dataset indices this rank reads in ``epoch`` (iters_per_epoch x B_local)."""
        needed = self.iters_per_epoch * self.batch_size
        self.sampler.set_epoch(epoch)
        indices = list(self.sampler)
        repeat = 1
        while len(indices) < needed:  # ITERS_PER_EPOCH longer than one pass of the sampler
            if hasattr(self.sampler, "epoch_indices"):
                indices += list(self.sampler.epoch_indices(epoch, repeat))
            else:
                indices += list(self.sampler)
            repeat += 1
        return indices[:needed]

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        make = BatchMaker(self.items, self.epoch_indices(epoch), self.transform,
                          self.batch_size, True, (self.seed, epoch, self.rank), np.int32)
        for images, pids, camids in iterate_batches(make, self.num_workers):
            yield _as_tensor(images), _as_tensor(pids), _as_tensor(camids)


class ReidTestLoader:
    """Every sample of ``items`` in order (the last partial batch kept).

    Yields ``(images, pids, camids)``: a float32 mindspore Tensor (B, 3, H, W) and int64
    NumPy arrays (B,). ``img_paths`` lists the files in the same order. ``num_workers`` as
    for :class:`ReidTrainLoader`.
    """

    def __init__(self, items: List[Item], transform, batch_size: int, num_workers: int = 1,
                 rank: int = 0, world_size: int = 1):
        self.order = list(InferenceSampler(len(items), rank, world_size))
        self.items = items
        self.transform = transform
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.img_paths = [items[i][0] for i in self.order]
        self.num_samples = len(self.order)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        if self.num_samples == 0:
            return
        make = BatchMaker(self.items, self.order, self.transform, self.batch_size, False, (0,),
                          np.int64)
        for images, pids, camids in iterate_batches(make, self.num_workers):
            yield _as_tensor(images), pids, camids


def _combined_train_items(cfg) -> List[Item]:
    """Train items of every dataset in DATASETS.NAMES; ids offset so they stay distinct."""
    items: List[Item] = []
    for name in cfg.DATASETS.NAMES:
        dataset = build_dataset(cfg, name)
        offset = len({pid for _, pid, _ in items})
        items += [(path, pid + offset, camid) for path, pid, camid in dataset.train]
    if not items:
        raise ValueError("DATASETS.NAMES is empty: name at least one training dataset.")
    return items


def build_reid_train_loader(cfg, rank: Optional[int] = None,
                            world_size: Optional[int] = None) -> ReidTrainLoader:
    """The training loader of DATASETS.NAMES on this rank (see :class:`ReidTrainLoader`).

    Batches hold SOLVER.IMS_PER_BATCH // world_size images (P ids x DATALOADER.NUM_INSTANCE);
    an epoch is SOLVER.ITERS_PER_EPOCH batches, or one pass of the sampler when it is 0.
    A negative SEED gives the sampler seed 0, so that all ranks agree on the order.
    """
    rank = comm.get_rank() if rank is None else int(rank)
    world_size = comm.get_world_size() if world_size is None else int(world_size)
    items = _combined_train_items(cfg)
    seed = int(cfg.SEED) if cfg.SEED >= 0 else 0
    sampler = SAMPLER_REGISTRY.get(cfg.DATALOADER.SAMPLER_TRAIN)(
        items, cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE, rank, world_size, seed)
    batch_size = cfg.SOLVER.IMS_PER_BATCH // world_size
    sampler_batches = len(sampler) // batch_size
    iters = int(cfg.SOLVER.ITERS_PER_EPOCH) or sampler_batches
    num_classes = len({pid for _, pid, _ in items})
    workers = num_workers_from_config(cfg, world_size)
    get_logger().info(
        "Train loader: %d images of %d ids, %d x %d images per batch on each of %d device(s), "
        "%d iterations per epoch (one pass of the sampler: %d), %d loader thread(s)",
        len(items), num_classes, batch_size // cfg.DATALOADER.NUM_INSTANCE,
        cfg.DATALOADER.NUM_INSTANCE, world_size, iters, sampler_batches, workers)
    return ReidTrainLoader(items, sampler, build_transforms(cfg, is_train=True), batch_size,
                           iters, num_classes, workers, seed, rank)


def build_reid_test_loader(cfg, dataset_name: str, rank: int = 0,
                           world_size: int = 1) -> Tuple[ReidTestLoader, int]:
    """``(loader over query then gallery, number of queries)`` of ``dataset_name``.

    By default every rank reads every sample; ``world_size`` > 1 gives this rank a
    contiguous slice instead.
    """
    dataset = build_dataset(cfg, dataset_name)
    items = list(dataset.query) + list(dataset.gallery)
    loader = ReidTestLoader(items, build_transforms(cfg, is_train=False), cfg.TEST.IMS_PER_BATCH,
                            num_workers_from_config(cfg), rank, world_size)
    return loader, len(dataset.query)
