"""The train and test pipelines from INPUT.*."""
from .autoaugment import AutoAugment
from .transforms import (ERASING_MODES, SEED_ERASING_FILL, Compose, Normalize, PadRandomCrop,
                         RandomErasing, RandomHorizontalFlip, RandomTranslate, Resize, ToCHW,
                         ToFloat)


def build_erasing(cfg) -> RandomErasing:
    """RandomErasing from INPUT.REA (MODE "seed" or "retry", see config/defaults.py)."""
    rea = cfg.INPUT.REA
    if rea.MODE not in ERASING_MODES:
        raise ValueError(f"Unknown INPUT.REA.MODE '{rea.MODE}': use one of {list(ERASING_MODES)}.")
    seed_mode = rea.MODE == "seed"
    value = list(rea.VALUE) or (SEED_ERASING_FILL if seed_mode else cfg.INPUT.PIXEL_MEAN)
    if len(value) not in (1, 3):
        raise ValueError(f"INPUT.REA.VALUE must hold 1 or 3 values (one per channel), got "
                         f"{list(rea.VALUE)}.")
    return RandomErasing(rea.PROB, rea.AREA, rea.ASPECT, value,
                         attempts=1 if seed_mode else 100, log_uniform=not seed_mode)


def build_transforms(cfg, is_train: bool = True) -> Compose:
    """uint8 (H, W, 3) image -> normalised float32 (3, height, width).

    Train: [AutoAugment (INPUT.AUTOAUG, on the decoded image, fast-reid's SBS)], resize (or
    the random translation), flip, pad + random crop, each as INPUT.*
    enables it; test: resize only. Then normalise with INPUT.PIXEL_MEAN / PIXEL_STD (0-255
    scale) and transpose to CHW. Random erasing (train) comes after the normalisation in
    INPUT.REA.MODE "seed" (as the seed), before it in "retry".
    """
    inp = cfg.INPUT
    steps = []
    if is_train:
        size = tuple(inp.SIZE_TRAIN)
        if inp.AUTOAUG.ENABLED and inp.AUTOAUG.PROB > 0:
            steps.append(AutoAugment(inp.AUTOAUG.PROB))
        if inp.TRANSLATE.ENABLED:
            steps.append(RandomTranslate(size, inp.TRANSLATE.PROB, inp.TRANSLATE.SCALE))
        else:
            steps.append(Resize(size))
        if inp.FLIP.ENABLED:
            steps.append(RandomHorizontalFlip(inp.FLIP.PROB))
        if inp.PADDING.ENABLED:
            steps.append(PadRandomCrop(inp.PADDING.SIZE))
        steps.append(ToFloat())
    else:
        steps += [Resize(tuple(inp.SIZE_TEST)), ToFloat()]
    erasing = build_erasing(cfg) if is_train and inp.REA.ENABLED else None
    if erasing is not None and inp.REA.MODE != "seed":
        steps.append(erasing)
    steps.append(Normalize(inp.PIXEL_MEAN, inp.PIXEL_STD))
    if erasing is not None and inp.REA.MODE == "seed":
        steps.append(erasing)
    steps.append(ToCHW())
    return Compose(steps)
