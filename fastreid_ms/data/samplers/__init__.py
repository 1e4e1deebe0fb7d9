"""Samplers: the training identity sampler and the inference order."""
from .build import SAMPLER_REGISTRY
from .identity_sampler import IdentitySampler, check_batch_divisibility
from .inference_sampler import InferenceSampler

__all__ = ["SAMPLER_REGISTRY", "IdentitySampler", "InferenceSampler", "check_batch_divisibility"]
