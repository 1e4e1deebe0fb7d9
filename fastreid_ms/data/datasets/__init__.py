"""Datasets: importing this package registers every dataset in DATASET_REGISTRY."""
from .bases import DatasetLayoutError, ImageDataset
from .build import DATASET_REGISTRY
from . import market1501, dukemtmcreid, msmt17, cuhk03, synthetic  # noqa: F401  (register)
from . import market_folder, list_files  # noqa: F401  (register)
from .market1501 import Market1501
from .dukemtmcreid import DukeMTMC
from .msmt17 import MSMT17
from .cuhk03 import CUHK03
from .synthetic import Synthetic
from .market_folder import MarketFolder
from .list_files import ListFiles

__all__ = ["DATASET_REGISTRY", "DatasetLayoutError", "ImageDataset", "Market1501", "DukeMTMC",
           "MSMT17", "CUHK03", "Synthetic", "MarketFolder", "ListFiles"]
