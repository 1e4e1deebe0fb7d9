"""P identities x K instances per batch, identities sharded across ranks."""
from collections import defaultdict
from typing import Dict, Iterator, List, Sequence

import numpy as np

from .build import SAMPLER_REGISTRY


def check_batch_divisibility(batch_size: int, num_instances: int, world_size: int) -> int:
    """Identities per batch on one rank (P_local); a clear error when the numbers do not fit."""
    if num_instances < 1 or world_size < 1 or batch_size < 1:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({batch_size}), DATALOADER.NUM_INSTANCE ({num_instances}) "
            f"and the device count ({world_size}) must all be >= 1.")
    unit = num_instances * world_size
    if batch_size % unit != 0:
        lower = max(unit, batch_size // unit * unit)
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({batch_size}) must be divisible by DATALOADER.NUM_INSTANCE "
            f"({num_instances}) x the number of devices ({world_size}) = {unit}, so that every "
            f"device gets whole identities of {num_instances} images. Set SOLVER.IMS_PER_BATCH "
            f"to a multiple of {unit} (e.g. {lower} or {lower + unit}) or change "
            "DATALOADER.NUM_INSTANCE.")
    return batch_size // unit


def epoch_iterations(num_ids: int, world_size: int, ids_per_batch: int) -> int:
    """Batches of one pass on each rank: every rank takes ``num_ids // world_size``
    identities, a batch holds ``ids_per_batch`` (P) of them."""
    return (int(num_ids) // int(world_size)) // max(int(ids_per_batch), 1)


@SAMPLER_REGISTRY.register()
class IdentitySampler:
    """Dataset indices for one epoch on one rank, in batches of P ids x K instances.

    Each epoch all identities are shuffled with a generator seeded by (seed, epoch), the
    same on every rank; rank r takes every world_size-th identity of that order, so
    ranks see disjoint identities. Every identity of the rank's share then gives K of
    its images (drawn with replacement when it has fewer than K) and consecutive groups
    of P identities form the batches; identities left over after the last full batch
    wait for the next epoch (which shuffles anew). All ranks yield the same number of
    batches.

    Args:
        data_source: list of (path, pid, camid) (train pids 0..N-1).
        batch_size: the global batch (SOLVER.IMS_PER_BATCH), split across ranks.
        num_instances: K.
    """

    def __init__(self, data_source: Sequence, batch_size: int, num_instances: int,
                 rank: int = 0, world_size: int = 1, seed: int = 0):
        self.num_instances = int(num_instances)
        self.world_size = int(world_size)
        self.rank = int(rank)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.ids_per_batch = check_batch_divisibility(int(batch_size), self.num_instances,
                                                      self.world_size)
        self.batch_size = self.ids_per_batch * self.num_instances  # per rank
        self.seed = int(seed)
        self.epoch = 0
        index_of: Dict[int, List[int]] = defaultdict(list)
        for index, item in enumerate(data_source):
            index_of[int(item[1])].append(index)
        self.pids = np.array(sorted(index_of), dtype=np.int64)
        self.index_of = {pid: np.array(idx, dtype=np.int64) for pid, idx in index_of.items()}
        self.num_batches = epoch_iterations(len(self.pids), self.world_size, self.ids_per_batch)
        if self.num_batches == 0:
            raise ValueError(
                f"The training set has {len(self.pids)} identities: too few for one batch of "
                f"{self.ids_per_batch} identities on each of {self.world_size} device(s) "
                f"(SOLVER.IMS_PER_BATCH {batch_size} / DATALOADER.NUM_INSTANCE "
                f"{self.num_instances}). Lower SOLVER.IMS_PER_BATCH or raise NUM_INSTANCE.")

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order ``__iter__`` yields."""
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int, repeat: int = 0) -> List[int]:
        """This rank's indices for ``epoch`` (``repeat`` > 0 draws further passes of the same
        epoch, for epochs longer than one pass)."""
        rng = np.random.default_rng([self.seed, epoch, repeat])
        order = rng.permutation(self.pids)
        mine = order[self.rank::self.world_size][:self.num_batches * self.ids_per_batch]
        # Each rank needs its own stream for the instances; derived from the shared one.
        inst_rng = np.random.default_rng([self.seed, epoch, repeat, 1 + self.rank])
        out: List[int] = []
        for pid in mine:
            pool = self.index_of[int(pid)]
            replace = len(pool) < self.num_instances
            out.extend(inst_rng.choice(pool, size=self.num_instances, replace=replace).tolist())
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices(self.epoch))

    def __len__(self) -> int:
        """Number of indices per epoch on this rank (num_batches x P x K)."""
        return self.num_batches * self.batch_size
