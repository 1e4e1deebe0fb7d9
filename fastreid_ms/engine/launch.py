"""Distributed start-up on MindSpore's own runtime.

Two launch conventions are recognised, both read from the environment:

* **msrun / dynamic cluster** (any device): ``msrun --worker_num=N ... tools/train_net.py``
  starts one scheduler process (``MS_ROLE=MS_SCHED``) and N workers (``MS_ROLE=MS_WORKER``)
  that all run the same script; ``MS_WORKER_NUM``, ``MS_SCHED_HOST`` / ``MS_SCHED_PORT``
  and (usually) ``MS_NODE_ID`` / ``RANK_ID`` describe the cluster. The same variables set
  by hand give the environment-variable launch that msrun automates.
* **Ascend rank table**: one process per device started by a script
  (projects/AlignedReIDpp/scripts/run_train_ascend.sh) with ``RANK_TABLE_FILE``,
  ``RANK_SIZE``, ``RANK_ID`` and ``DEVICE_ID``.

``init_distributed`` then calls ``mindspore.communication.init`` with the backend of the
device (HCCL on Ascend, NCCL on GPU, MindSpore's TCP collectives "mccl" on CPU), sets the
DATA_PARALLEL auto-parallel context with gradient averaging and marks
``fastreid_ms.utils.comm`` initialised. The scheduler process never returns from
``init``: MindSpore runs the cluster's meta server in it and exits when the workers end.

Batch-norm statistics stay per device (no SyncBN): each rank normalises its own
``SOLVER.IMS_PER_BATCH / world_size`` images and keeps its own running statistics;
checkpoints hold rank 0's.
"""
import os

import numpy as np

from ..utils import comm
from ..utils.env import resolve_device

# MindSpore communication backend per device target.
BACKENDS = {"Ascend": "hccl", "GPU": "nccl", "CPU": "mccl"}

# Seconds a CPU collective waits for its peers before failing (MindSpore's default is 30).
# Rank 0 evaluates alone while the other ranks wait in the next collective, so the wait
# must outlast an evaluation; 1800 s matches HCCL's default execution timeout.
CPU_COMM_TIMEOUT_VAR = "MS_CPU_COMM_OP_TIMEOUT"
DEFAULT_CPU_COMM_TIMEOUT_S = 1800

_ROLE_VAR = "MS_ROLE"
_RANK_TABLE_VARS = ("RANK_TABLE_FILE", "MINDSPORE_HCCL_CONFIG_PATH")


class LaunchError(RuntimeError):
    """The launch environment is inconsistent (a variable set, its companions missing)."""


def _env_int(name: str, default: int = None):
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise LaunchError(f"Environment variable {name}={value!r} must be an integer.") from exc


def launch_mode() -> str:
    """How this process was started: "msrun" (dynamic cluster), "rank_table" or "single".

    Raises LaunchError for a half-set environment (RANK_SIZE > 1 without msrun's MS_ROLE
    or a rank table), which would otherwise shard the data for devices that never start.
    """
    role = os.environ.get(_ROLE_VAR, "")
    if role:
        if role not in ("MS_WORKER", "MS_SCHED"):
            raise LaunchError(f"Environment variable {_ROLE_VAR}={role!r} is not a role this tool "
                             "runs as: expected MS_WORKER or MS_SCHED (set by msrun).")
        return "msrun"
    rank_size = _env_int("RANK_SIZE", 1)
    if any(os.environ.get(name) for name in _RANK_TABLE_VARS):
        return "rank_table" if rank_size > 1 else "single"
    if rank_size > 1:
        raise LaunchError(
            f"RANK_SIZE={rank_size} is set but this process was started neither by msrun "
            "(MS_ROLE unset) nor with an Ascend rank table (RANK_TABLE_FILE unset). Launch with "
            "'msrun --worker_num=N --local_worker_num=N tools/train_net.py ...', use "
            "projects/AlignedReIDpp/scripts/run_train_ascend.sh with a rank table, or unset "
            "RANK_SIZE for a single-device run.")
    return "single"


def is_launched_as_worker() -> bool:
    """True when the process belongs to a distributed job and must call ``init_distributed``.

    This includes msrun's scheduler process, which runs the same script and serves the
    cluster from inside ``mindspore.communication.init``.
    """
    return launch_mode() != "single"


def is_scheduler() -> bool:
    """True in msrun's scheduler process (it trains nothing)."""
    return os.environ.get(_ROLE_VAR, "") == "MS_SCHED"


def expected_world_size() -> int:
    """The number of training processes the launch environment announces (1 if none)."""
    mode = launch_mode()
    if mode == "msrun":
        return _env_int("MS_WORKER_NUM", _env_int("RANK_SIZE", 1))
    if mode == "rank_table":
        return _env_int("RANK_SIZE", 1)
    return 1


def check_batch_split(ims_per_batch: int, num_instance: int, world_size: int) -> None:
    """Check that the global batch splits into whole P x K identity groups on every rank.

    Each rank draws ``ims_per_batch / world_size`` images as identities of
    ``num_instance`` images (the identity sampler's rule). Raises ConfigError naming the
    keys to change.
    """
    from ..config import ConfigError
    from ..data.samplers.identity_sampler import check_batch_divisibility
    try:
        check_batch_divisibility(int(ims_per_batch), int(num_instance), int(world_size))
    except ValueError as exc:
        raise ConfigError(f"{exc} (launch with {world_size} worker(s): the global batch is "
                          "split across them)") from None


def _set_device_for_init(device: str) -> None:
    import mindspore as ms
    if device == "CPU":
        ms.set_device("CPU")
    else:
        ms.set_device(device, _env_int("DEVICE_ID", 0))


def init_distributed(device: str = "CPU") -> int:
    """Join the distributed job this process was launched in; return the world size.

    ``device`` is MODEL.DEVICE (FASTREID_DEVICE overrides it). Calling it again after a
    successful call does nothing. In msrun's scheduler process this call does not
    return. On CPU, the collective timeout ``MS_CPU_COMM_OP_TIMEOUT`` defaults to
    ``DEFAULT_CPU_COMM_TIMEOUT_S`` unless the user exported it.
    """
    if comm.is_initialized():
        return comm.get_world_size()
    mode = launch_mode()
    if mode == "single":
        raise LaunchError(
            "init_distributed() was called in a process that no launcher started: run it "
            "under msrun (MS_ROLE, MS_WORKER_NUM, MS_SCHED_HOST/PORT) or with an Ascend rank "
            "table (RANK_TABLE_FILE, RANK_SIZE, RANK_ID, DEVICE_ID).")
    device = resolve_device(device)
    if mode == "rank_table" and device != "Ascend":
        raise LaunchError(
            f"A rank table (RANK_TABLE_FILE) launches Ascend devices only, but the device is "
            f"{device}: set MODEL.DEVICE Ascend, or start {device} jobs with msrun.")
    if device == "CPU":
        os.environ.setdefault(CPU_COMM_TIMEOUT_VAR, str(DEFAULT_CPU_COMM_TIMEOUT_S))

    import mindspore as ms
    from mindspore.communication import get_group_size, init

    _set_device_for_init(device)
    init(BACKENDS[device])
    world_size = int(get_group_size())
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                 gradients_mean=True, device_num=world_size)
    comm.mark_initialized()
    return world_size


def setup_distributed(cfg, eval_only: bool = False):
    """What ``tools/train_net.py`` runs before ``default_setup``; returns the config.

    In a single process it returns ``cfg`` untouched. In a distributed launch it first
    checks the batch split against the announced world size, so that a mismatch fails
    at once on every process (the scheduler included) with the same message instead of
    leaving peers waiting; then joins the job. A negative SEED is replaced by one drawn
    on rank 0 and shared, so that every rank starts from the same initial weights.
    """
    if not is_launched_as_worker():
        return cfg
    if not eval_only:
        check_batch_split(int(cfg.SOLVER.IMS_PER_BATCH), int(cfg.DATALOADER.NUM_INSTANCE),
                          expected_world_size())
    init_distributed(cfg.MODEL.DEVICE)
    if cfg.SEED < 0:
        seed = comm.shared_random_seed()
        was_frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.SEED = seed
        if was_frozen:
            cfg.freeze()
    return cfg


def check_resume_agrees(start_epoch: int, output_dir: str) -> None:
    """After ``resume_or_load`` on every rank: fail on every rank when they would continue
    from different epochs (OUTPUT_DIR is written by rank 0 only, so on several machines the
    other machines' copies may be missing or stale). No-op in a single process."""
    if not comm.is_initialized() or comm.get_world_size() <= 1:
        return
    epochs = [int(e) for e in comm.all_gather(np.array([start_epoch], np.int64))]
    if len(set(epochs)) > 1:
        per_rank = ", ".join(f"rank {r}: epoch {e}" for r, e in enumerate(epochs))
        # Every rank saw the same epochs and fails here: leave the job in order, so that
        # msrun's scheduler ends at once instead of waiting for lost workers to time out.
        from mindspore.communication import release
        release()
        comm.mark_initialized(False)
        raise LaunchError(
            f"The ranks would resume from different epochs ({per_rank}): they read different "
            f"checkpoints in OUTPUT_DIR {output_dir}. Only rank 0 writes it, so on several "
            "machines put OUTPUT_DIR on storage they all share (or copy rank 0's folder to "
            "each machine) before --resume.")
