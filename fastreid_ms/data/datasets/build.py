"""DATASET_REGISTRY: class(root=..., **kwargs) -> object with .train / .query / .gallery,
each a list of (image path, person id, camera id)."""
from ...utils.registry import Registry

DATASET_REGISTRY = Registry("DATASET")
