"""Image transforms as plain callables ``t(img, rng) -> img``.

``img`` is a NumPy array in HWC layout (uint8 before :class:`ToFloat`, float32 after);
``rng`` is a ``numpy.random.Generator`` owned by the caller, so a pipeline is
deterministic for a given generator state (the loaders seed one per sample). Each random
transform's ``draw`` makes its draws (in the order ``__call__`` makes them) without touching
pixels, so the loaders' fused pipeline (fused.py) draws a sample's parameters exactly as
this pipeline would and then renders them in one pass.
"""
import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
from PIL import Image


def _pair(size) -> Tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    return int(h), int(w)


def resize(img: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 array to ``size`` = (height, width)."""
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            img = t(img, rng)
        return img

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose(\n  {inner}\n)"


class Resize:
    """Resize to (height, width)."""

    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, img, rng=None):
        return resize(img, self.size)

    def __repr__(self):
        return f"Resize(size={self.size})"


class RandomTranslate:
    """The seed's random translation (Random2DTranslation of AlignedReID): with
    probability ``prob`` resize to ``scale`` x (height, width) (each side rounded) and crop
    the (height, width) window whose corner is ``round(uniform(0, slack))`` on each axis;
    otherwise just resize to (height, width)."""

    def __init__(self, size, prob: float = 0.5, scale: float = 1.125):
        self.size = _pair(size)
        self.prob = float(prob)
        self.scale = float(scale)

    def draw(self, rng) -> Tuple[Tuple[int, int], Tuple[int, int]]:
        """This sample's ``((resized height, width), (top, left) of the window))``, drawn
        from ``rng`` in the order of :meth:`__call__`."""
        h, w = self.size
        if rng.random() >= self.prob:
            return (h, w), (0, 0)
        big_h, big_w = int(round(h * self.scale)), int(round(w * self.scale))
        x = int(round(rng.uniform(0, big_w - w)))
        y = int(round(rng.uniform(0, big_h - h)))
        return (big_h, big_w), (y, x)

    def __call__(self, img, rng):
        h, w = self.size
        (big_h, big_w), (y, x) = self.draw(rng)
        big = resize(img, (big_h, big_w))
        return big[y:y + h, x:x + w]

    def __repr__(self):
        return f"RandomTranslate(size={self.size}, prob={self.prob}, scale={self.scale})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``prob``."""

    def __init__(self, prob: float = 0.5):
        self.prob = float(prob)

    def draw(self, rng) -> bool:
        """Whether this sample is mirrored (one draw from ``rng``)."""
        return bool(rng.random() < self.prob)

    def __call__(self, img, rng):
        if self.draw(rng):
            return np.ascontiguousarray(img[:, ::-1])
        return img

    def __repr__(self):
        return f"RandomHorizontalFlip(prob={self.prob})"


class PadRandomCrop:
    """Pad ``padding`` pixels of ``fill`` on every side, then crop a random window of the
    original size."""

    def __init__(self, padding: int, fill: int = 0):
        self.padding = int(padding)
        self.fill = fill

    def draw(self, rng) -> Tuple[int, int]:
        """(top, left) of the window in the padded image; (padding, padding) keeps the
        image where it is. No draw when ``padding`` is 0."""
        p = self.padding
        if p <= 0:
            return 0, 0
        y = int(rng.integers(0, 2 * p + 1))
        x = int(rng.integers(0, 2 * p + 1))
        return y, x

    def __call__(self, img, rng):
        p = self.padding
        if p <= 0:
            return img
        h, w = img.shape[:2]
        padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="constant",
                        constant_values=self.fill)
        y, x = self.draw(rng)
        return padded[y:y + h, x:x + w]

    def __repr__(self):
        return f"PadRandomCrop(padding={self.padding}, fill={self.fill})"


class ToFloat:
    """uint8 -> float32, keeping the 0-255 scale."""

    def __call__(self, img, rng=None):
        return img.astype(np.float32)

    def __repr__(self):
        return "ToFloat()"


# The seed's erasing fill, written into the normalised tensor (CIFAR's channel means).
SEED_ERASING_FILL = (0.4914, 0.4822, 0.4465)
ERASING_MODES = ("seed", "retry")


class RandomErasing:
    """Random erasing (Zhong et al., AAAI 2020) on a float (H, W, C) image.

    With probability ``prob`` a rectangle is drawn: area ``uniform(*area) x H x W``, aspect
    ratio (height / width) ``r`` uniform in ``aspect`` (``log_uniform``: log r uniform),
    height ``round(sqrt(area r))``, width ``round(sqrt(area / r))``, top-left corner uniform
    among the positions where it fits. If it does not fit (``h < H`` and ``w < W``) the
    draw is repeated up to ``attempts`` times, then the image is returned unchanged. The
    rectangle is filled with ``value`` (per channel, in the units of the image it is applied
    to). The seed's erasing is ``attempts=1``, uniform aspect, applied after normalisation
    with ``value`` = :data:`SEED_ERASING_FILL`.
    """

    def __init__(self, prob: float = 0.5, area=(0.02, 0.4), aspect=(0.3, 1 / 0.3),
                 value=SEED_ERASING_FILL, attempts: int = 1, log_uniform: bool = False):
        self.prob = float(prob)
        self.area = (float(area[0]), float(area[1]))
        self.aspect = (float(aspect[0]), float(aspect[1]))
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"INPUT.REA.ASPECT must be two positive increasing ratios, got "
                             f"{list(aspect)}.")
        self.value = np.asarray(value, dtype=np.float32)
        self.attempts = int(attempts)
        if self.attempts < 1:
            raise ValueError(f"Random erasing needs at least one attempt, got {attempts}.")
        self.log_uniform = bool(log_uniform)

    def _ratio(self, rng) -> float:
        if self.log_uniform:
            return math.exp(rng.uniform(math.log(self.aspect[0]), math.log(self.aspect[1])))
        return rng.uniform(*self.aspect)

    def draw(self, rng, height: int, width: int) -> Optional[Tuple[int, int, int, int]]:
        """The rectangle ``(top, left, height, width)`` erased in a ``height`` x ``width``
        image, or None; the draws depend on the image size only, not on its pixels."""
        if rng.random() >= self.prob:
            return None
        h, w = int(height), int(width)
        for _ in range(self.attempts):
            target = rng.uniform(*self.area) * h * w
            ratio = self._ratio(rng)
            eh = int(round(math.sqrt(target * ratio)))
            ew = int(round(math.sqrt(target / ratio)))
            if 0 < eh < h and 0 < ew < w:  # (an empty rectangle erases nothing either way)
                y = int(rng.integers(0, h - eh + 1))
                x = int(rng.integers(0, w - ew + 1))
                return y, x, eh, ew
        return None

    def __call__(self, img, rng):
        box = self.draw(rng, img.shape[0], img.shape[1])
        if box is None:
            return img
        y, x, eh, ew = box
        img = img.copy()
        img[y:y + eh, x:x + ew] = self.value
        return img

    def __repr__(self):
        return (f"RandomErasing(prob={self.prob}, area={self.area}, aspect={self.aspect}, "
                f"{'log-uniform' if self.log_uniform else 'uniform'}, attempts={self.attempts}, "
                f"value={self.value.tolist()})")


class Normalize:
    """(x - mean) / std per channel, on the 0-255 scale; float32 (H, W, 3)."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if (self.std <= 0).any():
            raise ValueError(f"INPUT.PIXEL_STD must be positive, got {list(std)}")

    def __call__(self, img, rng=None):
        return (img.astype(np.float32) - self.mean) / self.std

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class ToCHW:
    """(H, W, C) -> contiguous float32 (C, H, W)."""

    def __call__(self, img, rng=None):
        return np.ascontiguousarray(np.transpose(img, (2, 0, 1)), dtype=np.float32)

    def __repr__(self):
        return "ToCHW()"
