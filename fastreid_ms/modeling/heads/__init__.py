"""Heads: backbone map -> dict of outputs (training) or features (eval)."""
from .build import HEAD_REGISTRY, build_heads
from .embedding_head import EmbeddingHead

__all__ = ["HEAD_REGISTRY", "build_heads", "EmbeddingHead"]
