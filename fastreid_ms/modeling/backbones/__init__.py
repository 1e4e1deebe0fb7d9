"""Backbones: images (N, 3, H, W) -> feature map (N, C, h, w)."""
from .build import BACKBONE_REGISTRY, build_backbone
from .resnet import BasicBlock, Bottleneck, ResNet, build_resnet_backbone

__all__ = ["BACKBONE_REGISTRY", "build_backbone", "ResNet", "BasicBlock", "Bottleneck",
           "build_resnet_backbone"]
