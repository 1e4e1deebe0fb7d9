"""Process-level set-up: CPU kernel choice, seeding, MindSpore context."""
import logging
import os
import random

import numpy as np

ONEDNN_ISA_VAR = "ONEDNN_MAX_CPU_ISA"

# What ``configure_cpu_isa`` did, for the set-up log.
CPU_ISA_NOTE = {"message": "not configured"}


def cpu_has_avx512() -> bool:
    """True when /proc/cpuinfo lists AVX-512 foundation instructions (Linux only)."""
    try:
        with open("/proc/cpuinfo", "r", encoding="utf-8", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def configure_cpu_isa() -> str:
    """Cap oneDNN at AVX2 on AVX-512 CPUs unless the user chose a value.

    On AVX-512 machines MindSpore's oneDNN picks reference (very slow) convolution
    kernels: a ResNet-50 training step took ~259 s there and ~8 s with
    ``ONEDNN_MAX_CPU_ISA=AVX2``. The variable is read when oneDNN first runs, so this
    is called when ``fastreid_ms`` is imported, before any convolution. Returns a
    sentence for the log.
    """
    if ONEDNN_ISA_VAR in os.environ:
        msg = f"{ONEDNN_ISA_VAR}={os.environ[ONEDNN_ISA_VAR]} (set by the user)"
    elif cpu_has_avx512():
        os.environ[ONEDNN_ISA_VAR] = "AVX2"
        msg = (f"{ONEDNN_ISA_VAR}=AVX2 set by fastreid_ms: this CPU has AVX-512, where oneDNN "
               "falls back to slow reference convolutions; export the variable to override")
    else:
        msg = f"{ONEDNN_ISA_VAR} left unset (no AVX-512 on this CPU)"
    CPU_ISA_NOTE["message"] = msg
    return msg


THREADS_VAR = "FASTREID_NUM_THREADS"
# Thread pools that read their size from the environment when their library loads.
_THREAD_POOL_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS")


def requested_threads():
    """FASTREID_NUM_THREADS as a positive int, or None when unset (every library's default)."""
    value = os.environ.get(THREADS_VAR, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_VAR}={value!r} must be a positive integer (the CPU threads "
                         "of MindSpore's kernels, BLAS, numba and the evaluation).")
    return int(value)


def configure_thread_env() -> None:
    """With FASTREID_NUM_THREADS=N, size the BLAS / OpenMP / numba pools to N unless their own
    variables are set (effective for libraries not loaded yet: fastreid_ms is imported first
    by its tools); MindSpore's kernels follow in :func:`set_mindspore_context`."""
    n = requested_threads()
    if n is None:
        return
    for var in _THREAD_POOL_VARS:
        os.environ.setdefault(var, str(n))


def thread_note() -> str:
    """One line for the environment log."""
    n = requested_threads()
    if n is None:
        return f"library defaults ({THREADS_VAR} unset)"
    return f"{n} ({THREADS_VAR})"


def seed_all_rng(seed: int) -> int:
    """Seed Python, NumPy and MindSpore RNGs; a negative seed draws one. Returns the seed used."""
    if seed is None or seed < 0:
        seed = int.from_bytes(os.urandom(2), "little") + os.getpid() % 1000
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    import mindspore as ms
    ms.set_seed(seed)
    logging.getLogger("fastreid_ms").debug("Seeded RNGs with %d", seed)
    return seed


_DEVICE_ALIASES = {"cpu": "CPU", "gpu": "GPU", "cuda": "GPU", "ascend": "Ascend", "npu": "Ascend"}


def normalize_device(name: str) -> str:
    """'cpu' / 'GPU' / 'ascend' / 'npu' -> MindSpore's 'CPU' / 'GPU' / 'Ascend'."""
    key = str(name).strip().lower()
    if key not in _DEVICE_ALIASES:
        raise ValueError(
            f"Unknown MODEL.DEVICE '{name}': use one of CPU, GPU, Ascend "
            "(or set the environment variable FASTREID_DEVICE)."
        )
    return _DEVICE_ALIASES[key]


def resolve_device(cfg_device: str) -> str:
    """The device target: the FASTREID_DEVICE environment variable wins over MODEL.DEVICE."""
    return normalize_device(os.environ.get("FASTREID_DEVICE", cfg_device))


def set_mindspore_context(device: str, mode: str = "GRAPH", device_id: int = None) -> None:
    """Set MindSpore's device and execution mode ('GRAPH' or 'PYNATIVE')."""
    import mindspore as ms
    mode_key = str(mode).upper()
    if mode_key not in ("GRAPH", "PYNATIVE"):
        raise ValueError(f"Unknown execution mode '{mode}': use GRAPH or PYNATIVE.")
    if device_id is None:
        device_id = int(os.environ.get("DEVICE_ID", "0") or 0)
    from . import comm
    # After fastreid_ms.engine.launch.init_distributed the device is set and cannot change
    # (msrun may have given this rank another device id than DEVICE_ID says).
    if not comm.is_initialized() and not _device_already(ms, device, device_id):
        if device == "CPU":
            ms.set_device("CPU")
        else:
            ms.set_device(device, device_id)
    ms.set_context(mode=ms.GRAPH_MODE if mode_key == "GRAPH" else ms.PYNATIVE_MODE)
    threads = requested_threads()
    if threads is not None and device == "CPU":
        from mindspore.device_context.cpu import op_tuning
        try:
            op_tuning.threads_num(threads)
        except RuntimeError:  # already set in this process (it may be set only once)
            pass


def _device_already(ms, device: str, device_id: int) -> bool:
    """True when MindSpore already runs on ``device`` (set_device may not be called again
    once a kernel has run, even with the same value: tests and tools call this repeatedly)."""
    try:
        current = ms.get_current_device()
        target, current_id = current[0], current[1]
    except Exception:  # older MindSpore: no get_current_device
        return False
    return target == device and (device == "CPU" or int(current_id) == int(device_id))
