"""Image transforms (NumPy / PIL callables taking an explicit random generator)."""
from .build import build_transforms
from .transforms import (Compose, Normalize, PadRandomCrop, RandomErasing, RandomHorizontalFlip,
                         RandomTranslate, Resize, ToCHW, ToFloat)

__all__ = ["build_transforms", "Compose", "Normalize", "PadRandomCrop", "RandomErasing",
           "RandomHorizontalFlip", "RandomTranslate", "Resize", "ToCHW", "ToFloat"]
