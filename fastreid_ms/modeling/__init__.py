"""Models: backbones, heads, losses and the meta-architectures that join them.

``build_model(cfg)`` returns the meta-architecture MODEL.META_ARCHITECTURE names.
"""
from .backbones import BACKBONE_REGISTRY, ResNet, build_backbone
from .heads import HEAD_REGISTRY, EmbeddingHead, build_heads
from .losses import LOSS_REGISTRY, CenterLoss, CrossEntropyLoss, TripletLoss
from .meta_arch import META_ARCH_REGISTRY, Baseline, build_model

__all__ = ["build_model", "build_backbone", "build_heads", "BACKBONE_REGISTRY", "HEAD_REGISTRY",
           "LOSS_REGISTRY", "META_ARCH_REGISTRY", "Baseline", "ResNet", "EmbeddingHead",
           "CrossEntropyLoss", "TripletLoss", "CenterLoss"]
