"""Build datasets from the config, and the train / test loaders on mindspore.dataset.

Each epoch the loader asks its sampler for this rank's indices, wraps them in a
random-access source (decode with PIL, transform with a generator seeded by
(SEED, epoch, rank, position), so the result does not depend on the worker count) and
runs it through ``GeneratorDataset`` -> ``batch``. A file that cannot be read stops
the iteration with :class:`ImageReadError` naming it, also when the failure happened in
a worker process.
"""
import math
import os
import re
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..utils import comm
from ..utils.logger import get_logger
from .datasets import DATASET_REGISTRY
from .samplers import SAMPLER_REGISTRY, InferenceSampler
from .transforms import build_transforms

Item = Tuple[str, int, int]

_IMAGE_ERROR = "Cannot read image"
_IMAGE_ERROR_RE = re.compile(r"(Cannot read image '.*?': [^\n]*)")


class ImageReadError(OSError):
    """An image file is missing, truncated or not an image; the message names the file."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def build_dataset(cfg, name: str):
    """The dataset registered as ``name``, built from ``cfg`` (DATASETS.ROOT and the
    dataset's own keys). A missing or malformed folder raises DatasetLayoutError."""
    return DATASET_REGISTRY.get(name).from_config(cfg)


def read_image(path: str) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array; :class:`ImageReadError` if it fails."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as exc:  # PIL raises many types for broken files
        raise ImageReadError(
            f"{_IMAGE_ERROR} '{path}': {type(exc).__name__}: {exc}. Replace or remove the file "
            "(the dataset lists it).") from exc


def num_workers_from_config(cfg) -> int:
    """DATALOADER.NUM_WORKERS, at least 1 and at most the number of CPUs."""
    return max(1, min(int(cfg.DATALOADER.NUM_WORKERS), os.cpu_count() or 1))


class _Source:
    """Random-access source over ``order``: sample ``i`` is ``items[order[i]]`` decoded and
    transformed with a generator seeded by (seed..., i)."""

    def __init__(self, items: Sequence[Item], order: Sequence[int], transform, seed_key,
                 label_dtype):
        self.items = items
        self.order = np.asarray(order, dtype=np.int64)
        self.transform = transform
        self.seed_key = [int(k) for k in seed_key]
        self.label_dtype = label_dtype

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i):
        path, pid, camid = self.items[int(self.order[i])]
        rng = np.random.default_rng(self.seed_key + [int(i)])
        image = self.transform(read_image(path), rng)
        return image, np.array(pid, self.label_dtype), np.array(camid, self.label_dtype)


def _pipeline(source: _Source, batch_size: int, drop_remainder: bool, num_workers: int):
    import mindspore.dataset as msds
    dataset = msds.GeneratorDataset(source, column_names=["images", "pids", "camids"],
                                    shuffle=False, num_parallel_workers=num_workers,
                                    python_multiprocessing=num_workers > 1)
    return dataset.batch(batch_size, drop_remainder=drop_remainder)


def _iterate(dataset, output_numpy: bool):
    """Iterate a pipeline once; an image error raised in a worker comes back as
    :class:`ImageReadError` with the file's path instead of MindSpore's wrapped report."""
    iterator = dataset.create_tuple_iterator(num_epochs=1, output_numpy=output_numpy)
    try:
        for batch in iterator:
            yield batch
    except RuntimeError as exc:
        match = _IMAGE_ERROR_RE.search(str(exc))
        if match is None:
            raise
        raise ImageReadError(match.group(1)) from None
    finally:
        iterator.stop()


class ReidTrainLoader:
    """One epoch of training batches per iteration.

    Yields ``(images, pids, camids)`` mindspore Tensors: float32 (B_local, 3, H, W),
    int32 (B_local,), int32 (B_local,). ``set_epoch(e)`` makes the next iteration epoch
    ``e``; each iteration then moves on to the next epoch. The order is a deterministic
    function of the seed, the epoch and the rank.
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
        source = _Source(self.items, self.epoch_indices(epoch), self.transform,
                         (self.seed, epoch, self.rank), np.int32)
        dataset = _pipeline(source, self.batch_size, True, self.num_workers)
        yield from _iterate(dataset, output_numpy=False)


class ReidTestLoader:
    """Every sample of ``items`` in order (the last partial batch kept).

    Yields ``(images, pids, camids)``: a float32 mindspore Tensor (B, 3, H, W) and int64
    NumPy arrays (B,). ``img_paths`` lists the files in the same order.
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
        import mindspore as ms
        if self.num_samples == 0:
            return
        source = _Source(self.items, self.order, self.transform, (0,), np.int64)
        dataset = _pipeline(source, self.batch_size, False, self.num_workers)
        for images, pids, camids in _iterate(dataset, output_numpy=True):
            yield ms.Tensor(images), pids.astype(np.int64), camids.astype(np.int64)


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
    workers = num_workers_from_config(cfg)
    get_logger().info(
        "Train loader: %d images of %d ids, %d x %d images per batch on each of %d device(s), "
        "%d iterations per epoch (one pass of the sampler: %d), %d worker(s)",
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
