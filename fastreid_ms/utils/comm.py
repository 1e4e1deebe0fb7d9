"""Rank and world size of the current process, valid before and after distributed init.

Before ``mindspore.communication.init`` has run, the values come from the launch
environment (msrun sets ``MS_WORKER_NUM`` / ``MS_NODE_ID`` style variables and
``RANK_ID`` / ``RANK_SIZE`` are the Ascend rank-table convention), so loggers and
samplers built early already know which rank they are.

After initialisation the collective helpers (``synchronize``, ``all_reduce``,
``all_gather``, ``broadcast``, ``shared_random_seed``) exchange NumPy arrays between
the ranks through MindSpore's collective primitives; in a single process they return
their input. They are eager calls for the host side (evaluation, logging, seeds), not
for use inside a jitted step.
"""
import os

import numpy as np

_STATE = {"initialized": False}


def _env_int(*names, default=None):
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                continue
    return default


def mark_initialized(flag: bool = True) -> None:
    """Record that ``mindspore.communication.init`` has been called in this process."""
    _STATE["initialized"] = flag


def is_initialized() -> bool:
    return _STATE["initialized"]


def get_world_size() -> int:
    if _STATE["initialized"]:
        from mindspore.communication import get_group_size
        return int(get_group_size())
    return _env_int("RANK_SIZE", "MS_WORKER_NUM", default=1)


def get_rank() -> int:
    if _STATE["initialized"]:
        from mindspore.communication import get_rank as ms_get_rank
        return int(ms_get_rank())
    return _env_int("RANK_ID", "MS_NODE_ID", default=0) if get_world_size() > 1 else 0


def is_main_process() -> bool:
    """True on rank 0 only; never in msrun's scheduler process (it reports RANK_ID=0)."""
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        return False
    return get_rank() == 0


def _distributed() -> bool:
    return _STATE["initialized"] and get_world_size() > 1


def synchronize() -> None:
    """Barrier: return once every rank has reached this call (no-op in one process)."""
    if _distributed():
        all_reduce(np.zeros(1, np.float32))


def all_reduce(array, op: str = "sum") -> np.ndarray:
    """Element-wise ``op`` ("sum", "mean", "max" or "min") of ``array`` over the ranks.

    The values travel as float32 (the dtype every backend reduces); returns float32.
    """
    if op not in ("sum", "mean", "max", "min"):
        raise ValueError(f"all_reduce op must be 'sum', 'mean', 'max' or 'min', got {op!r}.")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not _distributed():
        return array.copy()
    if op in ("max", "min"):
        # MindSpore's CPU AllReduce only sums: take max / min over the gathered copies.
        stacked = all_gather(array[None])
        return stacked.max(axis=0) if op == "max" else stacked.min(axis=0)
    from mindspore import Tensor, ops
    out = ops.AllReduce(ops.ReduceOp.SUM)(Tensor(array)).asnumpy()
    return out / np.float32(get_world_size()) if op == "mean" else out


def all_gather(array) -> np.ndarray:
    """Rows of every rank's ``array`` (N_r, ...) stacked in rank order: (sum N_r, ...).

    Ranks may hold different numbers of rows; the trailing shape and dtype must agree.
    Values travel as float32 (integers up to 2**24 are exact); the result has the
    input's dtype.
    """
    array = np.asarray(array)
    if not _distributed():
        return array.copy()
    from mindspore import Tensor, ops
    world = get_world_size()
    rows = all_reduce(_one_hot_count(array.shape[0], get_rank(), world)).astype(np.int64)
    max_rows = int(rows.max())
    padded = np.zeros((max_rows,) + array.shape[1:], np.float32)
    padded[:array.shape[0]] = array
    gathered = ops.AllGather()(Tensor(padded)).asnumpy()
    gathered = gathered.reshape((world, max_rows) + array.shape[1:])
    parts = [gathered[r, :rows[r]] for r in range(world)]
    return np.concatenate(parts, axis=0).astype(array.dtype)


def _one_hot_count(count: int, rank: int, world: int) -> np.ndarray:
    out = np.zeros(world, np.float32)
    out[rank] = count
    return out


def broadcast(array, src: int = 0) -> np.ndarray:
    """``array`` as held by rank ``src`` (float32 on the wire; the input's dtype back).

    Every rank passes an array of the same shape.
    """
    array = np.asarray(array)
    if not _distributed():
        return array.copy()
    from mindspore import Tensor, ops
    out = ops.Broadcast(src)((Tensor(np.ascontiguousarray(array, np.float32)),))[0]
    return out.asnumpy().astype(array.dtype)


def shared_random_seed() -> int:
    """A random seed drawn on rank 0 and shared by every rank (0 <= seed < 2**24)."""
    seed = np.array([np.random.randint(0, 2 ** 24)], np.float32)
    return int(broadcast(seed, src=0)[0])
