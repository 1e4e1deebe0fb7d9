"""Meta-architectures: backbone + head + losses."""
from .baseline import Baseline
from .build import META_ARCH_REGISTRY, build_model

__all__ = ["META_ARCH_REGISTRY", "build_model", "Baseline"]
