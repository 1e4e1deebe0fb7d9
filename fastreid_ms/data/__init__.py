"""Datasets, samplers, transforms and the train / test loaders."""
from .build import (ImageReadError, build_dataset, build_reid_test_loader,
                    build_reid_train_loader, read_image)
from .datasets import DATASET_REGISTRY, DatasetLayoutError
from .samplers import SAMPLER_REGISTRY
from .transforms import build_transforms

__all__ = ["DATASET_REGISTRY", "SAMPLER_REGISTRY", "DatasetLayoutError", "ImageReadError",
           "build_dataset", "build_reid_train_loader", "build_reid_test_loader",
           "build_transforms", "read_image"]
