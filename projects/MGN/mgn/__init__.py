"""MGN plugin: importing it registers ``MGN`` (META_ARCH_REGISTRY), ``MGNHead``
(HEAD_REGISTRY), ``MGNCrossEntropyLoss`` and ``MGNTripletLoss`` (LOSS_REGISTRY) and the config
keys MODEL.HEADS.MGN.*, MODEL.LOSSES.MGN.*. Configs name it under
``PLUGINS: ["projects.MGN.mgn"]``."""
from .config import add_mgn_config
from .head import MGNBranch, MGNHead, clone_block, pool_rows, stripe_rows
from .loss import (MGNCrossEntropyLoss, MGNTripletLoss, mgn_cross_entropy,
                   mgn_triplet_features)
from .meta_arch import MGN, ImageNetTargets, ResNetTrunk

__all__ = ["add_mgn_config", "MGN", "MGNHead", "MGNBranch", "ResNetTrunk", "ImageNetTargets",
           "MGNCrossEntropyLoss", "MGNTripletLoss", "mgn_cross_entropy", "mgn_triplet_features",
           "clone_block", "pool_rows", "stripe_rows"]
