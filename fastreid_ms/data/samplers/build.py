"""SAMPLER_REGISTRY: class(data_source, batch_size, num_instances, rank, world_size, seed),
an iterable of dataset indices for one epoch (DATALOADER.SAMPLER_TRAIN)."""
from ...utils.registry import Registry

SAMPLER_REGISTRY = Registry("SAMPLER")
