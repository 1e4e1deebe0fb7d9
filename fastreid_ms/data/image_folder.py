"""A plain folder of images as the deployment tools see it (feature extraction, Ascend 310
preprocessing): sorted image files, labels parsed from Market1501-style names when they
parse, and the test transform of the config.
"""
import os
import re
from typing import List, Tuple

import numpy as np

from .build import read_image
from .datasets.bases import list_images
from .transforms import build_transforms
from .transforms.fused import FusedTransform

MARKET_NAME = re.compile(r"^([-\d]+)_c(\d+)")

Item = Tuple[str, int, int]


def parse_image_name(name: str) -> Tuple[int, int]:
    """(pid, 0-based camid) of a Market1501-style name ``0002_c1s1_000451_03.jpg``; (-1, -1)
    when the name does not parse."""
    match = MARKET_NAME.match(os.path.basename(name))
    if match is None:
        return -1, -1
    return int(match.group(1)), int(match.group(2)) - 1


def list_image_folder(folder: str, drop_junk: bool = True,
                      drop_distractors: bool = False) -> List[Item]:
    """``(path, pid, camid)`` of the images directly in ``folder``, sorted by name.

    Names that parse as Market1501 names give their person id and 0-based camera; as the
    dataset classes do, junk (pid -1 in the name) is dropped when ``drop_junk`` and
    distractors (pid 0) when ``drop_distractors``. Other names get (-1, -1) and are kept.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Image folder '{folder}' does not exist: pass a folder of "
                                ".jpg / .png images.")
    items = []
    for path in list_images(folder):
        name = os.path.basename(path)
        match = MARKET_NAME.match(name)
        if match is None:
            items.append((path, -1, -1))
            continue
        pid, cam = int(match.group(1)), int(match.group(2)) - 1
        if (pid == -1 and drop_junk) or (pid == 0 and drop_distractors):
            continue
        items.append((path, pid, cam))
    if not items:
        raise FileNotFoundError(f"No images (.jpg, .jpeg, .png, .bmp) in '{folder}'.")
    return items


class EvalImageLoader:
    """path -> float32 (3, H, W): the image decoded as the test loader does (RGB, an
    ImageReadError naming an unreadable file) and passed through the config's test transform
    (resize to INPUT.SIZE_TEST, normalise with INPUT.PIXEL_MEAN / PIXEL_STD; fused into one
    pass as in the test loader, the same values)."""

    def __init__(self, cfg):
        compose = build_transforms(cfg, is_train=False)
        self.transform = FusedTransform.from_compose(compose) or compose
        self._rng = np.random.default_rng(0)  # the test pipeline draws nothing

    def __call__(self, path: str) -> np.ndarray:
        return np.ascontiguousarray(self.transform(read_image(path), self._rng), dtype=np.float32)

    def batch(self, paths) -> np.ndarray:
        """float32 (len(paths), 3, H, W)."""
        return np.stack([self(p) for p in paths])
