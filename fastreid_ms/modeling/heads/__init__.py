"""Heads: backbone map -> dict of outputs (training) or features (eval)."""
from .build import HEAD_REGISTRY, build_heads
from .embedding_head import EmbeddingHead
from .pooling import POOLING_REGISTRY, build_pooling

__all__ = ["HEAD_REGISTRY", "build_heads", "EmbeddingHead", "POOLING_REGISTRY", "build_pooling"]
