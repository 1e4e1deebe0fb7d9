"""AlignedReID++ (Luo et al., Pattern Recognition 2019) as a fastreid_ms plugin.

Importing this module registers the head (``AlignedReIDppHead``), the local triplet loss
(``AlignedLocalTripletLoss``), the evaluator (``AlignedReIDEvaluator``) and the config keys;
configs list it under ``PLUGINS``.
"""
from . import config  # noqa: F401  (adds the config keys)
from . import dmli  # noqa: F401
from . import dmli_graph  # noqa: F401
from . import evaluator  # noqa: F401
from . import head  # noqa: F401
from . import losses  # noqa: F401
from .dmli_graph import dmli_matrix, dmli_paired, part_distances, shortest_path, squash
from .head import AlignedReIDppHead
from .local_triplet import AlignedLocalTripletLoss, aligned_local_triplet

__all__ = ["AlignedReIDppHead", "AlignedLocalTripletLoss", "aligned_local_triplet",
           "dmli_paired", "dmli_matrix", "part_distances", "shortest_path", "squash"]
