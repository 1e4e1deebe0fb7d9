"""OpenBLAS kernel choice for NumPy, made before NumPy loads (this module imports no NumPy).

NumPy's bundled OpenBLAS picks its GEMM kernels from the CPU model. A model newer than the
library knows (for example the Xeon family 6 model 207 of the project's CI machines with
OpenBLAS 0.3.23) falls back to the generic "Prescott" kernels: measured there, a 2048^3 sgemm
ran at 10 GMAC/s on one core instead of 50-60 with the AVX-512 kernels, and every GEMM of the
evaluation (global and part distances) was 5x slower. ``configure_blas_core`` names the kernel
family from the instruction sets the CPU reports, which is what OpenBLAS would pick for a CPU it
knows: "SkylakeX" (AVX-512 F/CD/BW/DQ/VL) or "Haswell" (AVX2 + FMA, also AMD Zen's choice).
"""
import os
import sys

CORETYPE_VAR = "OPENBLAS_CORETYPE"
_AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")

# What configure_blas_core did, for the environment log.
BLAS_NOTE = {"message": "not configured"}


def cpu_flags():
    """The instruction-set flags of /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", "r", encoding="utf-8", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def blas_core_for(flags):
    """OpenBLAS core name for a set of CPU flags, or None to leave OpenBLAS's own choice."""
    if all(f in flags for f in _AVX512):
        return "SkylakeX"
    if "avx2" in flags and "fma" in flags:
        return "Haswell"
    return None


def configure_blas_core():
    """Set OPENBLAS_CORETYPE from the CPU flags unless the user set it or NumPy is already
    loaded (then it could not take effect). Returns a sentence for the log."""
    if CORETYPE_VAR in os.environ:
        msg = f"{CORETYPE_VAR}={os.environ[CORETYPE_VAR]} (set by the user)"
    elif "numpy" in sys.modules:
        msg = (f"{CORETYPE_VAR} left unset: NumPy was imported before fastreid_ms (import "
               "fastreid_ms first, or export the variable, to choose OpenBLAS's kernels)")
    else:
        core = blas_core_for(cpu_flags())
        if core is None:
            msg = f"{CORETYPE_VAR} left unset (no AVX2 on this CPU)"
        else:
            os.environ[CORETYPE_VAR] = core
            msg = (f"{CORETYPE_VAR}={core} set by fastreid_ms from the CPU's instruction sets "
                   "(OpenBLAS falls back to generic kernels on CPU models it does not know); "
                   "export the variable to override")
    BLAS_NOTE["message"] = msg
    return msg
