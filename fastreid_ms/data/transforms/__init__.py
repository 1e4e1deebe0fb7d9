"""Image transforms (NumPy / PIL callables taking an explicit random generator)."""
from .build import build_erasing, build_transforms
from .transforms import (SEED_ERASING_FILL, Compose, Normalize, PadRandomCrop, RandomErasing,
                         RandomHorizontalFlip, RandomTranslate, Resize, ToCHW, ToFloat)

__all__ = ["build_erasing", "build_transforms", "SEED_ERASING_FILL", "Compose", "Normalize",
           "PadRandomCrop", "RandomErasing",
           "RandomHorizontalFlip", "RandomTranslate", "Resize", "ToCHW", "ToFloat"]
