"""A train or test pipeline of transforms.py run as one compiled pass per sample.

:meth:`FusedTransform.from_compose` recognises the pipelines :func:`build_transforms` makes
(resize or random translation, optional flip, optional pad + crop, ToFloat, random erasing
before or after Normalize, ToCHW). :meth:`~FusedTransform.draw` makes the sample's random
draws from its generator exactly as the Compose would (each transform's ``draw``, in
order), and :meth:`~FusedTransform.render` applies them with
:func:`resample.render_sample`: Pillow's bilinear resize of the window the crop keeps,
flip, pad, normalisation and erasing, writing float32 (3, H, W) straight into the batch.
For the same generator state the result equals the Compose's: bit for bit where Pillow
upscales (the fused kernel runs Pillow's arithmetic); where an axis shrinks, Pillow itself
resizes (its pass order changed in Pillow 13) and the kernel does the rest.
"""
from typing import NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image

from . import resample
from .transforms import (Compose, Normalize, PadRandomCrop, RandomErasing, RandomHorizontalFlip,
                         RandomTranslate, Resize, ToCHW, ToFloat)

__all__ = ["FusedTransform", "SampleDraw"]

_NO_ERASE = (0, 0, 0, 0)


class SampleDraw(NamedTuple):
    """One sample's random parameters (what the Compose would have drawn)."""
    big_size: Tuple[int, int]    # (height, width) the image is resized to
    corner: Tuple[int, int]      # (top, left) of the kept window in the resized image
    flip: bool                   # mirrored left-right
    shift: Tuple[int, int]       # pad + crop: output (i, j) reads window (i + dy, j + dx)
    erase: Tuple[int, int, int, int]  # (top, left, height, width); height 0: none


class FusedTransform:
    """``img (H_in, W_in, 3) uint8 -> (3, H, W) float32``, equal to the Compose it was built
    from (see the module docstring). Construct with :meth:`from_compose`."""

    def __init__(self, geometry, flip: Optional[RandomHorizontalFlip],
                 pad: Optional[PadRandomCrop], erasing: Optional[RandomErasing],
                 erase_before_normalize: bool, normalize: Normalize):
        self.geometry = geometry
        self.size = geometry.size
        self.flip = flip
        self.pad = pad
        self.erasing = erasing
        self.mean = np.ascontiguousarray(np.broadcast_to(normalize.mean, (3,)), np.float32)
        self.std = np.ascontiguousarray(np.broadcast_to(normalize.std, (3,)), np.float32)
        self.fill = int(pad.fill) if pad is not None else 0
        if erasing is None:
            self.erase_value = np.zeros(3, np.float32)
        else:
            value = np.ascontiguousarray(np.broadcast_to(erasing.value, (3,)), np.float32)
            # Erasing before Normalize writes pixel units: the value normalised the way
            # Normalize would normalise those pixels (the same float32 operations).
            self.erase_value = (value - self.mean) / self.std if erase_before_normalize \
                else value

    @classmethod
    def from_compose(cls, compose) -> Optional["FusedTransform"]:
        """The fused form of ``compose``, or None when it holds steps this pass does not
        know (a project's own transform): the loaders then run the Compose per sample."""
        if not resample.AVAILABLE or not isinstance(compose, Compose):
            return None
        steps = list(compose.transforms)

        def take(kind):
            if steps and type(steps[0]) is kind:
                return steps.pop(0)
            return None

        geometry = take(RandomTranslate) or take(Resize)
        flip = take(RandomHorizontalFlip)
        pad = take(PadRandomCrop)
        if geometry is None or take(ToFloat) is None:
            return None
        erase_before = take(RandomErasing)
        normalize = take(Normalize)
        erase_after = take(RandomErasing)
        if normalize is None or take(ToCHW) is None or steps:
            return None
        if erase_before is not None and erase_after is not None:
            return None
        if normalize.mean.size not in (1, 3) or normalize.std.size not in (1, 3):
            return None
        if pad is not None:
            fill = np.asarray(pad.fill)
            if fill.size != 1 or not 0 <= float(fill) <= 255 or float(fill) != int(fill):
                return None
            if pad.padding <= 0:
                pad = None
        erasing = erase_before or erase_after
        if erasing is not None and erasing.value.size not in (1, 3):
            return None
        return cls(geometry, flip, pad, erasing, erase_before is not None, normalize)

    def draw(self, rng: np.random.Generator) -> SampleDraw:
        """The sample's random parameters, drawn from ``rng`` as the Compose draws them."""
        height, width = self.size
        if isinstance(self.geometry, RandomTranslate):
            big_size, corner = self.geometry.draw(rng)
        else:
            big_size, corner = (height, width), (0, 0)
        flip = self.flip.draw(rng) if self.flip is not None else False
        shift = (0, 0)
        if self.pad is not None:
            y, x = self.pad.draw(rng)
            shift = (y - self.pad.padding, x - self.pad.padding)
        erase = _NO_ERASE
        if self.erasing is not None:
            erase = self.erasing.draw(rng, height, width) or _NO_ERASE
        return SampleDraw(big_size, corner, flip, shift, erase)

    def render(self, img: np.ndarray, draw: SampleDraw, out: np.ndarray) -> None:
        """Write the sample ``img`` (H_in, W_in, 3) uint8 with parameters ``draw`` into
        ``out``, a C-contiguous float32 (3, H, W) array (a slot of the batch)."""
        if out.shape != (3,) + tuple(self.size) or out.dtype != np.float32 \
                or not out.flags.c_contiguous:
            raise ValueError(f"render writes a C-contiguous float32 {(3,) + tuple(self.size)} "
                             f"array, got {out.dtype} {out.shape}.")
        big_h, big_w = draw.big_size
        if big_h < img.shape[0] or big_w < img.shape[1]:
            # A shrinking axis: Pillow resizes (its pass order there depends on the version).
            img = np.asarray(Image.fromarray(img).resize((big_w, big_h), Image.BILINEAR))
        resample.render_sample(img, draw.big_size, draw.corner, draw.flip, draw.shift,
                               self.fill, self.mean, self.std,
                               np.asarray(draw.erase, np.int32), self.erase_value, out)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Same contract as the Compose: a new (3, H, W) float32 array."""
        out = np.empty((3,) + tuple(self.size), np.float32)
        self.render(img, self.draw(rng), out)
        return out

    def __repr__(self) -> str:
        parts = [repr(self.geometry)]
        parts += [repr(t) for t in (self.flip, self.pad, self.erasing) if t is not None]
        return (f"FusedTransform({', '.join(parts)}, mean={self.mean.tolist()}, "
                f"std={self.std.tolist()})")
