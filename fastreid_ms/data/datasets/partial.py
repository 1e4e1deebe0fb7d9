"""Partial variants of any dataset: the images of chosen splits cropped as the AlignedReID++
paper's Market1501-Partial (a random 60-90 % of the height from a random top, resized back).

``<Name>-Partial`` in DATASETS.NAMES / DATASETS.TESTS is the dataset ``<Name>`` with
DATASETS.PARTIAL applied (by default to the queries only, as the paper). Each crop is a
function of (DATASETS.PARTIAL.SEED, the image's path relative to DATASETS.ROOT, its height)
only: not of the process, the rank, the worker count or the order in which images are
read. The crops are written once (PNG, lossless, each file atomically) to a cache folder,
by default ``<OUTPUT_DIR>/cache/partial/``, never into the dataset folder; the dataset's
items of those splits then point at the cached files (same person and camera ids).

The paper's draw for an image of height ``h``: crop height ``ch`` uniform among the integers
of [floor(low * h), floor(high * h)) (low 0.6, high 0.9), top row uniform among [0, h - ch),
the crop resized back to (h, w) (bilinear).
"""
import hashlib
import os
import tempfile
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
from PIL import Image

from ...utils.logger import get_logger
from .bases import Item, split_statistics

__all__ = ["PARTIAL_SUFFIX", "PARTIAL_SPLITS", "PartialCropper", "apply_partial",
           "partial_base_name", "partial_crop_box", "partial_from_config"]

PARTIAL_SUFFIX = "-Partial"
PARTIAL_SPLITS = ("train", "query", "gallery")


def partial_base_name(name: str):
    """``"Market1501"`` for ``"Market1501-Partial"``; None for a name without the suffix."""
    if name.endswith(PARTIAL_SUFFIX) and len(name) > len(PARTIAL_SUFFIX):
        return name[:-len(PARTIAL_SUFFIX)]
    return None


def image_key(path: str, root: str) -> str:
    """The identity of an image for its crop: its path relative to ``root``, '/'-separated
    (so the crop does not depend on where the datasets are mounted)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return rel.replace(os.sep, "/")


def _generator(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"partial-crop\0{int(seed)}\0{key}".encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def partial_crop_box(height: int, seed: int, key: str, low: float = 0.6,
                     high: float = 0.9) -> Tuple[int, int]:
    """``(top, crop_height)`` of the image ``key`` of ``height`` rows: crop height uniform
    among the integers of [floor(low * height), floor(high * height)), top uniform among
    [0, height - crop_height). Deterministic in (seed, key, height, low, high)."""
    height = int(height)
    lo, hi = int(np.floor(low * height)), int(np.floor(high * height))
    if not (1 <= lo < hi <= height):
        raise ValueError(f"DATASETS.PARTIAL.HEIGHT_RANGE {[low, high]} gives no crop height for "
                         f"an image of {height} rows (need 1 <= floor(low*h) < floor(high*h) <= h)")
    rng = _generator(seed, key)
    crop_height = int(rng.integers(lo, hi))
    top = int(rng.integers(0, height - crop_height)) if crop_height < height else 0
    return top, crop_height


def crop_partial_image(image: Image.Image, top: int, crop_height: int) -> Image.Image:
    """Rows [top, top + crop_height) of ``image``, resized back to its size (bilinear)."""
    width, height = image.size
    crop = image.crop((0, top, width, top + crop_height))
    return crop.resize((width, height), Image.BILINEAR)


def _write_png_atomic(image: Image.Image, path: str) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class PartialCropper:
    """Crops images as the paper's partial datasets and caches them.

    root: DATASETS.ROOT (image identities are paths relative to it); cache_dir: the folder
    the crops go to (a subfolder per (root, seed, range)); seed, low, high:
    DATASETS.PARTIAL.SEED and HEIGHT_RANGE. ``cached_path(path)`` makes (if missing or older
    than the source) and returns the cropped copy of ``path``.
    """

    def __init__(self, root: str, cache_dir: str, seed: int = 0, low: float = 0.6,
                 high: float = 0.9):
        self.root = root
        self.seed = int(seed)
        self.low, self.high = float(low), float(high)
        if not 0.0 < self.low < self.high <= 1.0:
            raise ValueError(f"DATASETS.PARTIAL.HEIGHT_RANGE must be [low, high] with "
                             f"0 < low < high <= 1, got {[low, high]}")
        # One subfolder per (dataset root, seed, range): settings and roots never mix.
        root_tag = hashlib.sha256(os.path.abspath(root).encode("utf-8")).hexdigest()[:10]
        tag = f"seed{self.seed}_h{self.low:g}-{self.high:g}_root{root_tag}"
        self.cache_dir = os.path.join(cache_dir, tag)
        data_root = os.path.abspath(root)
        if os.path.commonpath([data_root, os.path.abspath(self.cache_dir)]) == data_root:
            raise ValueError(f"DATASETS.PARTIAL.CACHE_DIR {os.path.abspath(cache_dir)} lies inside "
                             f"DATASETS.ROOT {data_root}: the crops would be written among the "
                             "dataset's files. Choose a folder outside it (the default is "
                             "OUTPUT_DIR/cache/partial).")

    def box(self, path: str, height: int) -> Tuple[int, int]:
        """(top, crop_height) of the image at ``path`` (of ``height`` rows)."""
        return partial_crop_box(height, self.seed, image_key(path, self.root), self.low, self.high)

    def cached_path(self, path: str) -> str:
        key = image_key(path, self.root)
        safe = key.replace("../", "__/")  # keys of images outside the root stay in the cache
        target = os.path.join(self.cache_dir, os.path.splitext(safe)[0] + ".png")
        try:
            if os.path.getmtime(target) >= os.path.getmtime(path):
                return target
        except OSError:
            pass
        from ..image_io import ImageReadError
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except Exception as exc:  # Pillow raises many types for broken files
            raise ImageReadError(f"Cannot read image '{path}' to crop it for the partial "
                                 f"dataset: {type(exc).__name__}: {exc}") from exc
        top, crop_height = partial_crop_box(img.size[1], self.seed, key, self.low, self.high)
        _write_png_atomic(crop_partial_image(img, top, crop_height), target)
        return target

    def crop_items(self, items: Iterable[Item]) -> List[Item]:
        """``items`` with each path replaced by its cropped copy."""
        return [(self.cached_path(path), pid, camid) for path, pid, camid in items]


def apply_partial(dataset, cropper: PartialCropper, splits: Sequence[str] = ("query",),
                  name: str = ""):
    """Replace the items of ``splits`` of ``dataset`` (in place) by their partial crops and
    return it. ``splits``: any of "train", "query", "gallery"."""
    splits = [str(s).lower() for s in splits]
    unknown = [s for s in splits if s not in PARTIAL_SPLITS]
    if unknown or not splits:
        raise ValueError(f"DATASETS.PARTIAL.SPLITS must name some of {list(PARTIAL_SPLITS)}, "
                         f"got {list(splits)}")
    done: Dict[str, int] = {}
    for split in splits:
        items = getattr(dataset, split)
        setattr(dataset, split, cropper.crop_items(items))
        done[split] = len(items)
    if hasattr(dataset, "dataset_name"):
        dataset.dataset_name = name or f"{dataset.dataset_name}{PARTIAL_SUFFIX}"
    get_logger().info("Partial %s: %s cropped to [%g h, %g h) of their height (seed %d), cached "
                      "in %s", name or type(dataset).__name__,
                      ", ".join(f"{n} {s} images" for s, n in done.items()), cropper.low,
                      cropper.high, cropper.seed, os.path.abspath(cropper.cache_dir))
    if "train" in done:
        dataset.num_train_pids = split_statistics(dataset.train)[0]
    return dataset


def partial_from_config(cfg, dataset, name: str):
    """``dataset`` made partial as DATASETS.PARTIAL says (see the module docstring)."""
    p = cfg.DATASETS.PARTIAL
    cache = p.CACHE_DIR or os.path.join(cfg.OUTPUT_DIR or ".", "cache", "partial")
    low, high = (list(p.HEIGHT_RANGE) + [None, None])[:2]
    if high is None:
        raise ValueError(f"DATASETS.PARTIAL.HEIGHT_RANGE must be [low, high], got "
                         f"{list(p.HEIGHT_RANGE)}")
    cropper = PartialCropper(cfg.DATASETS.ROOT, cache, p.SEED, low, high)
    return apply_partial(dataset, cropper, p.SPLITS, name)
