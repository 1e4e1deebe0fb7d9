"""Rank and world size of the current process, valid before and after distributed init.

Before ``mindspore.communication.init`` has run, the values come from the launch
environment (msrun sets ``MS_WORKER_NUM`` / ``MS_NODE_ID`` style variables and
``RANK_ID`` / ``RANK_SIZE`` are the Ascend rank-table convention), so loggers and
samplers built early already know which rank they are.
"""
import os

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
    return get_rank() == 0
