"""fastreid_ms: person re-identification on MindSpore."""
from .utils.blas import configure_blas_core as _configure_blas_core

# Before anything imports NumPy: OpenBLAS reads its kernel choice when it loads.
_configure_blas_core()

from .utils.env import configure_cpu_isa as _configure_cpu_isa
from .utils.env import configure_thread_env as _configure_thread_env

# Must run before MindSpore executes its first convolution (see utils/env.py).
_configure_cpu_isa()
# FASTREID_NUM_THREADS: size the thread pools before their libraries load.
_configure_thread_env()

__version__ = "0.1.0"
