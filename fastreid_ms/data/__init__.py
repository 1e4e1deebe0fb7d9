"""Datasets, samplers, transforms and the train / test loaders."""
from .build import build_dataset
from .datasets import DATASET_REGISTRY, DatasetLayoutError

__all__ = ["DATASET_REGISTRY", "DatasetLayoutError", "build_dataset"]
