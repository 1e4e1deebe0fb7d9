"""Build datasets from the config, and the train / test loaders on mindspore.dataset."""
from .datasets import DATASET_REGISTRY


def build_dataset(cfg, name: str):
    """The dataset registered as ``name``, built from ``cfg`` (DATASETS.ROOT and the
    dataset's own keys). A missing or malformed folder raises DatasetLayoutError."""
    return DATASET_REGISTRY.get(name).from_config(cfg)
