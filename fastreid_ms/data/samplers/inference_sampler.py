"""Every sample once, in order (the seed's test loader dropped the last partial batch)."""
from typing import Iterator


class InferenceSampler:
    """Indices 0..size-1 in order; with ``world_size`` > 1, rank r gets the r-th of
    ``world_size`` contiguous slices (sizes differ by at most one, nothing dropped or
    repeated)."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        per_rank, extra = divmod(int(size), int(world_size))
        self.start = rank * per_rank + min(rank, extra)
        self.stop = self.start + per_rank + (1 if rank < extra else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start
