"""Running NumPy work in our own threads: the worker count, and keeping OpenBLAS single-threaded
while our threads run GEMMs side by side (so two workers do not spawn 2 x 2 BLAS threads)."""
import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

__all__ = ["default_num_threads", "single_threaded_blas", "run_tasks"]

_BLAS_FUNCS = None
_BLAS_LOCK = threading.Lock()


def default_num_threads():
    """Worker threads for CPU work: the CPUs this process may use, at most
    FASTREID_NUM_THREADS when that is set."""
    from .env import requested_threads
    try:
        usable = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = max(1, os.cpu_count() or 1)
    requested = requested_threads()
    return usable if requested is None else min(usable, requested)


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS numpy uses, or None."""
    global _BLAS_FUNCS
    if _BLAS_FUNCS is not None:
        return _BLAS_FUNCS or None
    here = os.path.dirname(np.__file__)
    paths = (glob.glob(os.path.join(here, "..", "numpy.libs", "libopenblas*"))
             + glob.glob(os.path.join(here, ".libs", "libopenblas*")))
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", ""):
            setter = getattr(lib, "openblas_set_num_threads" + suffix, None)
            getter = getattr(lib, "openblas_get_num_threads" + suffix, None)
            if setter is not None and getter is not None:
                _BLAS_FUNCS = (setter, getter)
                return _BLAS_FUNCS
    _BLAS_FUNCS = False
    return None


@contextmanager
def single_threaded_blas(active=True):
    """While our own threads run GEMMs side by side, keep BLAS from spawning more."""
    funcs = _find_openblas() if active else None
    if funcs is None:
        yield
        return
    setter, getter = funcs
    with _BLAS_LOCK:
        previous = getter()
        setter(1)
        try:
            yield
        finally:
            setter(previous)


def run_tasks(tasks, func, num_threads=None):
    """``func(*task)`` for every task, in ``num_threads`` threads (default: all usable CPUs)
    with BLAS single-threaded meanwhile; in order in this thread when one thread suffices.
    The first exception raised by a task is raised here."""
    num_threads = num_threads or default_num_threads()
    if num_threads <= 1 or len(tasks) <= 1:
        for task in tasks:
            func(*task)
        return
    with single_threaded_blas(True), ThreadPoolExecutor(num_threads) as pool:
        for _ in pool.map(lambda a: func(*a), tasks):
            pass
