"""Transforms: shapes, value ranges, and that each random step does what it claims."""
import math

import numpy as np
import pytest
from PIL import Image

from fastreid_ms.config import get_cfg
from fastreid_ms.data.transforms import (Normalize, PadRandomCrop, RandomErasing,
                                         RandomHorizontalFlip, RandomTranslate, Resize,
                                         build_transforms)


def _image(h=40, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _find_window(big, small):
    """All (y, x) where ``small`` equals a window of ``big`` (slow, obviously correct)."""
    h, w = small.shape[:2]
    return [(y, x) for y in range(big.shape[0] - h + 1) for x in range(big.shape[1] - w + 1)
            if np.array_equal(big[y:y + h, x:x + w], small)]


def _cfg(**overrides):
    cfg = get_cfg()
    cfg.INPUT.SIZE_TRAIN = [32, 16]
    cfg.INPUT.SIZE_TEST = [24, 12]
    cfg.merge_from_list([item for pair in overrides.items() for item in pair])
    return cfg


@pytest.mark.parametrize("is_train", [True, False])
def test_pipeline_shapes_dtype_and_range(is_train):
    cfg = _cfg()
    t = build_transforms(cfg, is_train=is_train)
    mean = np.array(cfg.INPUT.PIXEL_MEAN, np.float32)[:, None, None]
    std = np.array(cfg.INPUT.PIXEL_STD, np.float32)[:, None, None]
    expected = (3, 32, 16) if is_train else (3, 24, 12)
    for seed in range(20):
        out = t(_image(50 + seed, 23), np.random.default_rng(seed))
        assert out.shape == expected and out.dtype == np.float32 and out.flags.c_contiguous
        assert (out >= (0 - mean) / std - 1e-5).all() and (out <= (255 - mean) / std + 1e-5).all()


def test_normalise_values_exact():
    cfg = _cfg(**{"INPUT.TRANSLATE.ENABLED": False, "INPUT.FLIP.ENABLED": False,
                  "INPUT.REA.ENABLED": False})
    img = np.zeros((32, 16, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 128, 250
    out = build_transforms(cfg, True)(img, np.random.default_rng(0))
    for c, v in enumerate((10, 128, 250)):
        expected = (v - cfg.INPUT.PIXEL_MEAN[c]) / cfg.INPUT.PIXEL_STD[c]
        np.testing.assert_allclose(out[c], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="PIXEL_STD"):
        Normalize([0, 0, 0], [1, 0, 1])


def test_resize_matches_pil():
    img = _image(37, 19)
    out = Resize((32, 16))(img)
    ref = np.asarray(Image.fromarray(img).resize((16, 32), Image.BILINEAR))
    np.testing.assert_array_equal(out, ref)


def test_flip():
    img = _image()
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(img, np.random.default_rng(0)),
                                  img[:, ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(img, np.random.default_rng(0)), img)
    rng = np.random.default_rng(1)
    flips = sum(np.array_equal(RandomHorizontalFlip(0.5)(img, rng), img[:, ::-1])
                for _ in range(400))
    assert 150 < flips < 250


def test_translate_is_a_window_of_the_enlarged_image():
    img = _image(60, 30)
    t = RandomTranslate((32, 16), prob=1.0, scale=1.125)
    big = np.asarray(Image.fromarray(img).resize((18, 36), Image.BILINEAR))  # round(1.125 x)
    offsets = set()
    rng = np.random.default_rng(0)
    for _ in range(40):
        out = t(img, rng)
        assert out.shape == (32, 16, 3)
        found = _find_window(big, out)
        assert found, "the output is not a crop of the 1.125x resized image"
        offsets.update(found)
    assert len(offsets) > 4  # random positions, not a fixed crop
    no_translate = RandomTranslate((32, 16), prob=0.0)(img, np.random.default_rng(0))
    np.testing.assert_array_equal(no_translate, Resize((32, 16))(img))


def test_pad_random_crop():
    img = _image(20, 10) | 1  # no zero pixels, so padding is recognisable
    t = PadRandomCrop(3)
    padded = np.pad(img, ((3, 3), (3, 3), (0, 0)))
    rng = np.random.default_rng(0)
    saw_border = False
    for _ in range(30):
        out = t(img, rng)
        assert out.shape == img.shape
        assert _find_window(padded, out)
        saw_border |= bool((out == 0).all(axis=2).any())
    assert saw_border


def test_random_erasing_rectangle_area_aspect_value():
    img = np.full((64, 32, 3), 7.0, np.float32)
    value = (1.0, 2.0, 3.0)
    t = RandomErasing(prob=1.0, area=(0.02, 0.4), aspect=(0.3, 3.33), value=value)
    rng = np.random.default_rng(0)
    for _ in range(50):
        out = t(img, rng)
        assert (img == 7.0).all()  # the input is not modified
        changed = (out != 7.0).any(axis=2)
        ys, xs = np.nonzero(changed)
        assert len(ys) > 0
        eh, ew = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert changed.sum() == eh * ew  # one filled rectangle
        np.testing.assert_array_equal(out[changed], np.tile(value, (eh * ew, 1)))
        area = eh * ew / (64 * 32)
        # Rounding of height and width moves the area and aspect a little.
        assert 0.02 * 0.7 <= area <= 0.4 * 1.3
        assert 0.3 * 0.6 <= eh / ew <= 3.33 / 0.6
    untouched = RandomErasing(prob=0.0)(img, np.random.default_rng(0))
    np.testing.assert_array_equal(untouched, img)


def test_erasing_fills_with_mean_so_normalised_zero():
    cfg = _cfg(**{"INPUT.TRANSLATE.ENABLED": False, "INPUT.FLIP.ENABLED": False,
                  "INPUT.REA.PROB": 1.0})
    img = np.full((32, 16, 3), 255, np.uint8)
    out = build_transforms(cfg, True)(img, np.random.default_rng(3))
    erased = np.abs(out).max(axis=0) < 1e-4
    assert erased.sum() > 0.015 * 32 * 16


def test_deterministic_for_a_generator_seed():
    t = build_transforms(_cfg(**{"INPUT.PADDING.ENABLED": True, "INPUT.PADDING.SIZE": 2}), True)
    img = _image(48, 24)
    a = [t(img, np.random.default_rng(s)) for s in range(8)]
    b = [t(img, np.random.default_rng(s)) for s in range(8)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(a[0], x) for x in a[1:])


def test_pipeline_follows_config_switches():
    cfg = _cfg(**{"INPUT.TRANSLATE.ENABLED": False, "INPUT.FLIP.ENABLED": False,
                  "INPUT.REA.ENABLED": False, "INPUT.PADDING.ENABLED": False})
    names = [type(t).__name__ for t in build_transforms(cfg, True).transforms]
    assert names == ["Resize", "ToFloat", "Normalize", "ToCHW"]
    cfg = _cfg(**{"INPUT.PADDING.ENABLED": True})
    names = [type(t).__name__ for t in build_transforms(cfg, True).transforms]
    assert names == ["RandomTranslate", "RandomHorizontalFlip", "PadRandomCrop", "ToFloat",
                     "RandomErasing", "Normalize", "ToCHW"]
    assert math.isclose(build_transforms(cfg, True).transforms[0].scale, 1.125)
