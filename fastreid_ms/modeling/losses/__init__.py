"""Losses: class(cfg) -> Cell; (head outputs dict, targets) -> scalar already scaled."""
from .build import LOSS_REGISTRY, build_losses, loss_names
from .center_loss import CenterLoss, center_distance
from .circle import CircleLoss, CircleSoftmaxLoss, circle_logits, pairwise_circle
from .cross_entropy import CrossEntropyLoss, label_smoothed_cross_entropy
from .triplet import (TripletLoss, batch_hard_triplet, hard_example_mining, l2_normalize,
                      margin_ranking, pairwise_euclidean, same_identity, valid_anchors,
                      weighted_example_mining)

__all__ = ["LOSS_REGISTRY", "build_losses", "loss_names", "CrossEntropyLoss", "TripletLoss", "CenterLoss",
           "label_smoothed_cross_entropy", "batch_hard_triplet", "hard_example_mining",
           "weighted_example_mining", "margin_ranking", "pairwise_euclidean", "l2_normalize",
           "same_identity", "valid_anchors", "center_distance", "CircleLoss", "CircleSoftmaxLoss",
           "circle_logits", "pairwise_circle"]
