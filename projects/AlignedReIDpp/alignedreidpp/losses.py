"""The losses AlignedReID++ registers (imported by the plugin's __init__)."""
from .local_triplet import AlignedLocalTripletLoss, aligned_local_triplet

__all__ = ["AlignedLocalTripletLoss", "aligned_local_triplet"]
