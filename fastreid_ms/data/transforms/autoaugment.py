"""AutoAugment (Cubuk et al., CVPR 2019) with the ImageNet policy, as fast-reid's SBS uses it
(INPUT.AUTOAUG.ENABLED, applied to the decoded image first with probability PROB).

The policy is the paper's table of 25 sub-policies, each two (operation, probability,
magnitude 0-10) triples; one sub-policy is drawn uniformly per image and each of its two
operations is applied with its own probability. Magnitudes map to arguments as in the
reference implementations of the ImageNet policy: rotate up to 30 degrees and shear up to 0.3
(random sign), posterize to 4 + 4 m / 10 bits, solarize above 256 m / 10, colour / contrast /
sharpness enhancement factor 0.1 + 1.8 m / 10; geometric operations fill with grey (128) and
resample bilinearly or bicubically at random.

Works on uint8 (H, W, 3) arrays and draws from the caller's ``numpy.random.Generator`` (see
transforms.py), so a pipeline stays deterministic for a generator state.
"""
from typing import Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

_MAX_LEVEL = 10.0
_FILL = (128, 128, 128)

# The ImageNet policy: 25 sub-policies of two (operation, probability, magnitude).
IMAGENET_POLICY: Tuple[Tuple[Tuple[str, float, int], ...], ...] = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)


def _signed(value: float, rng) -> float:
    return -value if rng.random() < 0.5 else value


def _resample(rng):
    return Image.BILINEAR if rng.random() < 0.5 else Image.BICUBIC


def apply_op(img: Image.Image, name: str, magnitude: float, rng) -> Image.Image:
    """One AutoAugment operation at ``magnitude`` (0-10) on a PIL RGB image."""
    level = magnitude / _MAX_LEVEL
    if name == "Rotate":
        return img.rotate(_signed(30.0 * level, rng), resample=_resample(rng), fillcolor=_FILL)
    if name in ("ShearX", "ShearY"):
        shear = _signed(0.3 * level, rng)
        matrix = (1, shear, 0, 0, 1, 0) if name == "ShearX" else (1, 0, 0, shear, 1, 0)
        return img.transform(img.size, Image.AFFINE, matrix, resample=_resample(rng),
                             fillcolor=_FILL)
    if name == "Posterize":
        return ImageOps.posterize(img, int(4 * level) + 4)
    if name == "Solarize":
        return ImageOps.solarize(img, int(256 * level))
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    enhancers = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
                 "Sharpness": ImageEnhance.Sharpness, "Brightness": ImageEnhance.Brightness}
    if name in enhancers:
        return enhancers[name](img).enhance(0.1 + 1.8 * level)
    raise ValueError(f"Unknown AutoAugment operation '{name}'.")


class AutoAugment:
    """With probability ``prob``: one sub-policy of ``policy`` drawn uniformly, each of its
    operations applied with its probability. uint8 (H, W, 3) -> uint8 (H, W, 3)."""

    def __init__(self, prob: float = 0.1, policy=IMAGENET_POLICY):
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"INPUT.AUTOAUG.PROB must be in [0, 1], got {prob}.")
        self.prob = float(prob)
        self.policy = tuple(policy)

    def __call__(self, img, rng):
        if rng.random() >= self.prob:
            return img
        sub_policy = self.policy[int(rng.integers(len(self.policy)))]
        pil = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).convert("RGB")
        for name, prob, magnitude in sub_policy:
            if rng.random() < prob:
                pil = apply_op(pil, name, magnitude, rng)
        return np.asarray(pil, dtype=np.uint8)

    def __repr__(self):
        return f"AutoAugment(prob={self.prob}, policy=ImageNet ({len(self.policy)} sub-policies))"
