"""fastreid_ms: person re-identification on MindSpore."""
from .utils.env import configure_cpu_isa as _configure_cpu_isa

# Must run before MindSpore executes its first convolution (see utils/env.py).
_configure_cpu_isa()

__version__ = "0.1.0"
