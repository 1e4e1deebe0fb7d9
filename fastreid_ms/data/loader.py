"""Batches of decoded, transformed samples, made by worker threads.

A batch is ``positions`` of an epoch's order: sample ``p`` is ``items[order[p]]`` read with
:func:`read_image` and transformed with a generator seeded by ``seed_key + (p,)`` (the train
loader's key is (SEED, epoch, rank)), so a sample depends on nothing but (seed, epoch,
rank, position): not on the worker count nor on which thread made it. The pipelines that
:func:`build_transforms` makes run fused (transforms/fused.py: decode, then one compiled
pass that writes the normalised CHW sample straight into the batch); both steps release
the GIL (about 80% of a sample's time; seeding the generator and the draws hold it), so
worker threads run side by side. Any other transform runs per sample as given.

``num_workers`` 0 makes each batch in the calling thread when it is asked for; N >= 1 makes
batches ahead in N threads (all of them on the next batch: see :func:`iterate_batches`),
handed out in order. An exception in a worker (an :class:`ImageReadError` naming the file)
is raised in the caller, as it was raised.
"""
import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Iterator, Sequence, Tuple

import numpy as np

from .image_io import read_image
from .transforms.fused import FusedTransform

__all__ = ["BatchMaker", "NUM_WORKERS_AUTO", "LOCAL_DEVICES_VAR", "default_num_workers",
           "iterate_batches", "local_device_count"]

Item = Tuple[str, int, int]
Batch = Tuple[np.ndarray, np.ndarray, np.ndarray]  # images (B, 3, H, W), pids (B,), camids (B,)

# DATALOADER.NUM_WORKERS value that asks for default_num_workers().
NUM_WORKERS_AUTO = -1
# The devices of this job on this machine, where the launcher cannot tell (several machines).
LOCAL_DEVICES_VAR = "FASTREID_LOCAL_DEVICES"


def local_device_count(world_size: int) -> Tuple[int, str]:
    """(training processes on this machine, how that was found).

    FASTREID_LOCAL_DEVICES when set; otherwise the job's world size (msrun and rank-table
    launches on one machine start every rank there; on several machines set the variable
    to the devices per machine).
    """
    value = os.environ.get(LOCAL_DEVICES_VAR, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{LOCAL_DEVICES_VAR}={value!r} must be a positive integer (the "
                             "training processes of this job on this machine).")
        return int(value), LOCAL_DEVICES_VAR
    world_size = max(int(world_size), 1)
    if world_size == 1:
        return 1, "one process"
    return world_size, (f"the world size; on several machines set {LOCAL_DEVICES_VAR} to the "
                        "devices per machine")


def default_num_workers(world_size: int = 1) -> Tuple[int, str]:
    """(loader threads for one training process, the reason, for the log).

    The CPUs this process may use (its affinity, at most FASTREID_NUM_THREADS) divided among
    the training processes on this machine, at least 1; when msrun pinned each process to
    its own cores (``--bind_core``, which sets MSRUN_CPU_LIST) the affinity already is this
    process's share.
    """
    from ..utils.threads import default_num_threads
    usable = default_num_threads()
    if os.environ.get("MSRUN_CPU_LIST"):
        return max(usable, 1), f"{usable} CPU(s) msrun bound to this process"
    local, how = local_device_count(world_size)
    workers = max(usable // local, 1)
    if local == 1:
        return workers, f"{usable} usable CPU(s)"
    return workers, f"{usable} usable CPU(s) / {local} local device(s) ({how})"


class BatchMaker:
    """Makes batch ``k`` of ``order``: float32 images (B, 3, H, W) and labels (B,) of
    ``label_dtype``.

    items: (path, pid, camid) per dataset index; order: the dataset index of each position
    of the epoch; seed_key: the generator seed of position p is ``seed_key + (p,)``. With a
    fused transform (``splittable``) the batch is allocated first and its samples filled
    in any order, by several threads at once (:meth:`new_batch`, :meth:`fill`).
    """

    def __init__(self, items: Sequence[Item], order: Sequence[int], transform,
                 batch_size: int, drop_last: bool, seed_key: Sequence[int], label_dtype):
        self.items = items
        self.order = np.asarray(order, dtype=np.int64)
        self.transform = transform
        self.fused = FusedTransform.from_compose(transform)
        self.splittable = self.fused is not None
        self.batch_size = int(batch_size)
        self.seed_key = [int(k) for k in seed_key]
        self.label_dtype = label_dtype
        full, rest = divmod(len(self.order), self.batch_size)
        self.num_batches = full if (drop_last or rest == 0) else full + 1

    def __len__(self) -> int:
        return self.num_batches

    def positions(self, k: int) -> range:
        """The epoch positions of batch ``k``."""
        start = k * self.batch_size
        return range(start, min(start + self.batch_size, len(self.order)))

    def new_batch(self, k: int) -> Batch:
        """Uninitialised arrays for batch ``k`` (fused transforms only)."""
        n = len(self.positions(k))
        return (np.empty((n, 3) + tuple(self.fused.size), np.float32),
                np.empty(n, self.label_dtype), np.empty(n, self.label_dtype))

    def fill(self, batch: Batch, k: int, first: int, stop: int) -> None:
        """Samples ``first`` to ``stop - 1`` (indices within batch ``k``) into ``batch``."""
        images, pids, camids = batch
        start = k * self.batch_size
        for b in range(first, stop):
            p = start + b
            path, pids[b], camids[b] = self.items[int(self.order[p])]
            rng = np.random.default_rng(self.seed_key + [p])
            self.fused.render(read_image(path), self.fused.draw(rng), images[b])

    def __call__(self, k: int) -> Batch:
        """Batch ``k``, made in this thread."""
        if self.splittable:
            batch = self.new_batch(k)
            self.fill(batch, k, 0, len(batch[1]))
            return batch
        positions = self.positions(k)
        samples, pids, camids = [], [], []
        for p in positions:
            path, pid, camid = self.items[int(self.order[p])]
            rng = np.random.default_rng(self.seed_key + [p])
            samples.append(np.asarray(self.transform(read_image(path), rng), np.float32))
            pids.append(pid)
            camids.append(camid)
        return (np.stack(samples), np.asarray(pids, self.label_dtype),
                np.asarray(camids, self.label_dtype))


def iterate_batches(maker: BatchMaker, num_workers: int) -> Iterator[Batch]:
    """The batches of ``maker`` in order, made ahead by ``num_workers`` threads, or each on
    demand in this thread when it is 0.

    A fused batch is split into chunks of about B / (2 N) samples, so that all N threads
    work on the next batch (a short wait for it, no idle thread at the end of an epoch);
    up to max(2, N) batches are in flight. While fewer threads than usable CPUs run, the
    consuming thread, when it has to wait for a batch, makes that batch's chunks that no
    thread has started yet itself (so 1 worker on 2 cores uses both while the trainer
    waits). Other transforms make whole batches, one per thread. Stopping early cancels
    what was not started and waits for the running ones.
    """
    num_batches = len(maker)
    if num_workers <= 0:
        for k in range(num_batches):
            yield maker(k)
        return
    from ..utils.threads import default_num_threads
    consumer_helps = num_workers < default_num_threads()
    ahead = max(2, num_workers)
    chunk = max(1, math.ceil(maker.batch_size / (2 * num_workers)))
    pool = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="fastreid-data")
    pending = deque()  # (batch or None, [(future, job arguments)])

    def submit(k):
        if not maker.splittable:
            pending.append((None, [(pool.submit(maker, k), None)]))
            return
        batch = maker.new_batch(k)
        n = len(batch[1])
        jobs = [(batch, k, first, min(first + chunk, n)) for first in range(0, n, chunk)]
        pending.append((batch, [(pool.submit(maker.fill, *job), job) for job in jobs]))

    try:
        submitted = 0
        while submitted < min(ahead, num_batches):
            submit(submitted)
            submitted += 1
        while pending:
            batch, jobs = pending[0]
            for future, job in jobs:
                if consumer_helps and job is not None and future.cancel():
                    maker.fill(*job)  # no thread had started it: make it here
            running = [future for future, _ in jobs if not future.cancelled()]
            wait(running)  # one wake-up for the batch, not one per chunk
            results = [future.result() for future in running]
            pending.popleft()
            if submitted < num_batches:
                submit(submitted)
                submitted += 1
            yield results[0] if batch is None else batch
    finally:
        for _, jobs in pending:
            for future, _ in jobs:
                future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
