"""The train and test pipelines from INPUT.*."""
from .transforms import (Compose, Normalize, PadRandomCrop, RandomErasing, RandomHorizontalFlip,
                         RandomTranslate, Resize, ToCHW, ToFloat)


def build_transforms(cfg, is_train: bool = True) -> Compose:
    """uint8 (H, W, 3) image -> normalised float32 (3, height, width).

    Train: resize (or the random translation), flip, pad + random crop, random erasing,
    each as INPUT.* enables it; test: resize only. Then normalise with
    INPUT.PIXEL_MEAN / PIXEL_STD (0-255 scale) and transpose to CHW.
    """
    inp = cfg.INPUT
    steps = []
    if is_train:
        size = tuple(inp.SIZE_TRAIN)
        if inp.TRANSLATE.ENABLED:
            steps.append(RandomTranslate(size, inp.TRANSLATE.PROB, inp.TRANSLATE.SCALE))
        else:
            steps.append(Resize(size))
        if inp.FLIP.ENABLED:
            steps.append(RandomHorizontalFlip(inp.FLIP.PROB))
        if inp.PADDING.ENABLED:
            steps.append(PadRandomCrop(inp.PADDING.SIZE))
        steps.append(ToFloat())
        if inp.REA.ENABLED:
            steps.append(RandomErasing(inp.REA.PROB, inp.REA.AREA, inp.REA.ASPECT, inp.REA.VALUE))
    else:
        steps += [Resize(tuple(inp.SIZE_TEST)), ToFloat()]
    steps += [Normalize(inp.PIXEL_MEAN, inp.PIXEL_STD), ToCHW()]
    return Compose(steps)
