"""Draw a synthetic person re-ID dataset in Market-1501 layout, deterministically from a seed.

An identity is a person made of coloured parts: hair and skin, a torso with a pattern
(plain, horizontal stripes, vertical stripes or checks) and sleeves, trousers or
shorts, shoes, and sometimes a bag on one side. Each camera has its own background,
colour cast and brightness. Per image the person's box is shifted and scaled
vertically (so the parts move between rows, as with detector boxes), shifted a little
sideways, sometimes occluded and mirrored. The gallery also holds a few junk images
(id -1: background and body fragments) and distractors (id 0000: people not in the
query). Every image's pixels depend only on (seed, identity, image number), so the
output is the same whatever order it is drawn in.
"""
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

# Bump when the drawing changes, so cached datasets of an older drawing are not reused.
GENERATOR_VERSION = 1

_SKIN = np.array([[255, 224, 196], [234, 192, 160], [198, 145, 108], [141, 96, 66],
                  [92, 62, 42]], np.float32)
_HAIR = np.array([[20, 16, 14], [70, 45, 25], [150, 110, 60], [220, 190, 120],
                  [160, 160, 160], [140, 50, 25]], np.float32)
_PATTERNS = ("plain", "hstripes", "vstripes", "checks")


@dataclasses.dataclass(frozen=True)
class SyntheticParams:
    """What the dataset is drawn from; its hash names the cached folder."""
    seed: int = 0
    num_train_ids: int = 100
    num_test_ids: int = 100
    images_per_id: int = 12
    num_cameras: int = 6
    height: int = 128
    width: int = 64

    def validate(self) -> None:
        problems = []
        if self.num_train_ids < 1 or self.num_test_ids < 1:
            problems.append("num_train_ids and num_test_ids must be >= 1")
        if self.num_train_ids + self.num_test_ids > 9999:
            problems.append("num_train_ids + num_test_ids must be <= 9999 (4-digit ids)")
        if self.images_per_id < 2:
            problems.append("images_per_id must be >= 2 (a query needs a gallery match)")
        if not 2 <= self.num_cameras <= 9:
            problems.append("num_cameras must be in 2..9 (Market-style names c1..c9)")
        if self.height < 16 or self.width < 8:
            problems.append("height must be >= 16 and width >= 8")
        if problems:
            raise ValueError(f"Invalid synthetic dataset parameters {self}: " + "; ".join(problems)
                             + ". Change DATASETS.SYNTHETIC.* (or the tool's flags).")

    def digest(self) -> str:
        """A short hash of the parameters and the generator version."""
        text = json.dumps({"version": GENERATOR_VERSION, **dataclasses.asdict(self)},
                          sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def _vivid_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour: random hue, high saturation, medium-high value."""
    hue = rng.uniform(0.0, 6.0)
    sat = rng.uniform(0.55, 1.0)
    val = rng.uniform(0.35, 1.0)
    c = val * sat
    x = c * (1 - abs(hue % 2 - 1))
    sector = int(hue) % 6
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][sector]
    return (np.array(rgb) + (val - c)) * 255.0


def _any_colour(rng: np.random.Generator) -> np.ndarray:
    """Vivid colours mixed with greys, blacks and whites (like real clothes)."""
    if rng.random() < 0.3:
        return np.full(3, rng.uniform(15, 240))
    return _vivid_colour(rng)


def draw_identity(rng: np.random.Generator) -> Dict:
    """The appearance of one person (colours, pattern, proportions)."""
    return {
        "skin": _SKIN[rng.integers(len(_SKIN))],
        "hair": _HAIR[rng.integers(len(_HAIR))],
        "long_hair": bool(rng.random() < 0.35),
        "torso": _any_colour(rng),
        "torso2": _any_colour(rng),
        "pattern": _PATTERNS[rng.integers(len(_PATTERNS))],
        "period": float(rng.uniform(0.035, 0.08)),
        "long_sleeves": bool(rng.random() < 0.6),
        "legs": _any_colour(rng),
        "shorts": bool(rng.random() < 0.25),
        "shoes": _any_colour(rng),
        "bag": int(rng.integers(3)),  # 0 none, 1 handbag, 2 backpack strap
        "bag_colour": _any_colour(rng),
        "bag_side": 1.0 if rng.random() < 0.5 else -1.0,
        "torso_len": float(rng.uniform(0.34, 0.44)),
        "build": float(rng.uniform(0.85, 1.15)),
    }


def draw_camera(rng: np.random.Generator) -> Dict:
    """A camera's colour cast, brightness and background colours."""
    return {
        "cast": rng.uniform(0.78, 1.22, size=3),
        "brightness": float(rng.uniform(0.7, 1.25)),
        "wall": rng.uniform(60, 200, size=3),
        "floor": rng.uniform(40, 180, size=3),
        "horizon": float(rng.uniform(0.45, 0.8)),
        "noise": float(rng.uniform(3.0, 9.0)),
    }


def _background(cam: Dict, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    rows = np.arange(h, dtype=np.float32)[:, None, None] / h
    horizon = cam["horizon"] + rng.uniform(-0.08, 0.08)
    img = np.where(rows < horizon, cam["wall"], cam["floor"]) * np.ones((1, w, 1), np.float32)
    img = img * (0.85 + 0.3 * rows)  # a vertical light gradient
    return img.astype(np.float32)


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    img[mask] = colour


def draw_person(img: np.ndarray, person: Dict, top: float, height: float, centre: float,
                width: float, parts: Tuple[str, ...] = ("head", "torso", "legs", "shoes")) -> None:
    """Paint ``person`` into ``img`` (H, W, 3 float) in the box starting at row ``top``
    with ``height`` rows, centred on column ``centre`` with shoulder width ``width``."""
    h, w, _ = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    v = (yy + 0.5 - top) / height          # 0 at the top of the head, 1 under the shoes
    u = (xx + 0.5 - centre) / width        # -0.5..0.5 across the shoulders
    au = np.abs(u)
    t0 = 0.145
    t1 = t0 + person["torso_len"]
    if "head" in parts:
        if person["long_hair"]:
            _paint(img, (au < 0.2) & (v > 0.02) & (v < t0 + 0.12), person["hair"])
        head = ((u / 0.15) ** 2 + ((v - 0.075) / 0.07) ** 2) < 1.0
        _paint(img, head, person["skin"])
        _paint(img, head & (v < 0.045), person["hair"])
    if "torso" in parts:
        torso = (v >= t0) & (v < t1) & (au < 0.5 - 0.08 * (v - t0) / (t1 - t0))
        sleeve_len = (t1 - t0) * (0.95 if person["long_sleeves"] else 0.3)
        arms = (au >= 0.5) & (au < 0.64) & (v >= t0 + 0.01) & (v < t1 + 0.04)
        _paint(img, arms, person["skin"])
        _paint(img, arms & (v < t0 + 0.01 + sleeve_len), person["torso"])
        period = person["period"]
        stripes_v = np.floor((v - t0) / period) % 2 == 1
        stripes_u = np.floor((u + 0.5) / (period * 2.2)) % 2 == 1
        second = {"plain": np.zeros_like(torso), "hstripes": stripes_v, "vstripes": stripes_u,
                  "checks": stripes_v ^ stripes_u}[person["pattern"]]
        _paint(img, torso, person["torso"])
        _paint(img, torso & second, person["torso2"])
        if person["bag"] == 1:
            side_u = person["bag_side"] * u
            _paint(img, (side_u > 0.5) & (side_u < 0.82) & (v > t1 - 0.12) & (v < t1 + 0.06),
                   person["bag_colour"])
        elif person["bag"] == 2:
            strap = np.abs(person["bag_side"] * u - (0.42 - 0.9 * (v - t0))) < 0.07
            _paint(img, torso & strap, person["bag_colour"])
    if "legs" in parts:
        legs = (v >= t1) & (v < 0.94) & (au < 0.4) & ~((au < 0.05) & (v > t1 + 0.08))
        _paint(img, legs, person["legs"])
        if person["shorts"]:
            _paint(img, legs & (v > t1 + 0.45 * (0.94 - t1)), person["skin"])
    if "shoes" in parts:
        _paint(img, (v >= 0.94) & (v < 1.0) & (au < 0.42) & (au > 0.04), person["shoes"])


def render_image(person: Dict, cam: Dict, rng: np.random.Generator, h: int, w: int,
                 parts: Tuple[str, ...] = ("head", "torso", "legs", "shoes")) -> np.ndarray:
    """One (h, w, 3) uint8 image of ``person`` seen by ``cam`` with a random box."""
    img = _background(cam, h, w, rng)
    height = h * rng.uniform(0.78, 1.08) * (0.95 + 0.05 * person["build"])
    top = h * rng.uniform(-0.08, 0.14)          # the vertical misalignment
    centre = w * (0.5 + rng.uniform(-0.08, 0.08))
    width = w * 0.52 * person["build"] * height / h
    draw_person(img, person, top, height, centre, width, parts)
    if rng.random() < 0.3:                      # an occluder over part of the person
        oh, ow = int(h * rng.uniform(0.15, 0.35)), int(w * rng.uniform(0.3, 0.8))
        y0 = int(rng.integers(0, h - oh + 1))
        x0 = 0 if rng.random() < 0.5 else w - ow
        img[y0:y0 + oh, x0:x0 + ow] = _any_colour(rng)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = img * cam["cast"] * cam["brightness"] * rng.uniform(0.9, 1.1)
    img = img + rng.normal(0.0, cam["noise"], size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def plan_dataset(params: SyntheticParams) -> List[Tuple[str, str, Tuple[int, ...], int]]:
    """Every image as (split folder, file name, RNG key, identity key), without drawing.

    Identity keys: the person id for real ids, 10000 + n for distractors, -1 for junk.
    """
    params.validate()
    plan = []
    n_query = max(1, params.images_per_id // 6)
    for pid in range(1, params.num_train_ids + params.num_test_ids + 1):
        is_train = pid <= params.num_train_ids
        order = _rng(params.seed, 4, pid).permutation(params.num_cameras)
        cams = np.tile(order, -(-params.images_per_id // params.num_cameras))
        for k in range(params.images_per_id):
            split = ("bounding_box_train" if is_train else
                     "query" if k < n_query else "bounding_box_test")
            name = f"{pid:04d}_c{cams[k] + 1}s1_{k:06d}_00.jpg"
            plan.append((split, name, (3, pid, k, int(cams[k])), pid))
    num_distractors = max(1, params.num_test_ids // 5)
    num_junk = max(1, params.num_test_ids // 10)
    for n in range(num_distractors):
        cam = int(_rng(params.seed, 5, n).integers(params.num_cameras))
        plan.append(("bounding_box_test", f"0000_c{cam + 1}s1_{n:06d}_00.jpg",
                     (6, n, cam), 10000 + n))
    for n in range(num_junk):
        cam = int(_rng(params.seed, 7, n).integers(params.num_cameras))
        plan.append(("bounding_box_test", f"-1_c{cam + 1}s1_{n:06d}_00.jpg", (8, n, cam), -1))
    return plan


def render_planned(params: SyntheticParams, key: Tuple[int, ...], identity: int) -> np.ndarray:
    """The pixels of one planned image (see :func:`plan_dataset`)."""
    cam = draw_camera(_rng(params.seed, 2, key[-1]))
    rng = _rng(params.seed, *key)
    if identity == -1:  # junk: a fragment of a random person, or background only
        person = draw_identity(rng)
        parts = [("legs", "shoes"), ("head",), ()][int(rng.integers(3))]
        return render_image(person, cam, rng, params.height, params.width, parts)
    person = draw_identity(_rng(params.seed, 1, identity))
    return render_image(person, cam, rng, params.height, params.width)


def write_dataset(output_dir: str, params: SyntheticParams) -> int:
    """Draw the whole dataset into ``output_dir`` (Market-1501 layout); returns the image
    count. Writes ``synthetic.json`` (the parameters) last."""
    plan = plan_dataset(params)
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        os.makedirs(os.path.join(output_dir, split), exist_ok=True)
    for split, name, key, identity in plan:
        pixels = render_planned(params, key, identity)
        Image.fromarray(pixels).save(os.path.join(output_dir, split, name), quality=90)
    meta = {"generator_version": GENERATOR_VERSION, "num_images": len(plan),
            **dataclasses.asdict(params)}
    with open(os.path.join(output_dir, "synthetic.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    return len(plan)


def write_dataset_atomic(final_dir: str, params: SyntheticParams) -> bool:
    """Draw the dataset into a temporary sibling folder, then rename it to ``final_dir``.

    A crash never leaves a half dataset at ``final_dir``, and processes racing to create
    the same folder (ranks of one job) do not clash: the first rename wins and the others
    discard their copy. Returns True when this call created ``final_dir``; False when it
    already held a complete dataset.
    """
    final_dir = os.path.abspath(final_dir)
    if os.path.isfile(os.path.join(final_dir, "synthetic.json")):
        return False
    if os.path.exists(final_dir) and os.listdir(final_dir):
        raise FileExistsError(
            f"{final_dir} exists but is not a complete synthetic dataset (no synthetic.json); "
            "remove it or choose another output folder.")
    parent = os.path.dirname(final_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(final_dir)}.tmp-", dir=parent)
    try:
        write_dataset(tmp_dir, params)
        if os.path.isdir(final_dir) and not os.listdir(final_dir):
            try:
                os.rmdir(final_dir)  # an empty folder left by the user: replace it
            except OSError:
                pass  # filled meanwhile by another process; the rename below decides
        try:
            os.rename(tmp_dir, final_dir)
        except OSError:
            if os.path.isfile(os.path.join(final_dir, "synthetic.json")):
                return False  # another process finished first
            raise
        return True
    finally:
        if os.path.isdir(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
