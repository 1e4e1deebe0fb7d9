"""Test helpers: small dataset trees in the real folder layouts (tiny valid images), and
loading the repository's scripts (tools/, ascend310_infer/) as modules."""
import importlib.util
import os
import sys
from typing import Iterable, Sequence

import numpy as np
from PIL import Image


def write_image(path: str, height: int = 16, width: int = 8, value: int = 128) -> str:
    """A tiny valid image (JPEG or PNG by extension) filled with ``value`` plus a ramp."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ramp = (np.arange(height * width * 3).reshape(height, width, 3) % 7).astype(np.uint8)
    Image.fromarray(np.clip(ramp + value, 0, 255).astype(np.uint8)).save(path)
    return path


def write_split(folder: str, names: Iterable[str], **kwargs) -> None:
    """Create ``folder`` and an image for each file name in it."""
    os.makedirs(folder, exist_ok=True)
    for name in names:
        write_image(os.path.join(folder, name), **kwargs)


def write_three_splits(dataset_dir: str, train: Sequence[str], query: Sequence[str],
                       gallery: Sequence[str], **kwargs) -> str:
    """Market-style folders bounding_box_train / query / bounding_box_test."""
    write_split(os.path.join(dataset_dir, "bounding_box_train"), train, **kwargs)
    write_split(os.path.join(dataset_dir, "query"), query, **kwargs)
    write_split(os.path.join(dataset_dir, "bounding_box_test"), gallery, **kwargs)
    return dataset_dir


def market_name(pid: int, cam: int, n: int = 0) -> str:
    """0002_c1s1_000451_03.jpg style (pid -1 gives -1_c1s1_...)."""
    prefix = "-1" if pid == -1 else f"{pid:04d}"
    return f"{prefix}_c{cam}s1_{n:06d}_00.jpg"


def duke_name(pid: int, cam: int, n: int = 0) -> str:
    """0001_c2_f0046182.jpg style."""
    return f"{pid:04d}_c{cam}_f{n:07d}.jpg"


def cuhk03_name(pid: int, cam: int, n: int = 0) -> str:
    """0001_c1_1.png style."""
    return f"{pid:04d}_c{cam}_{n}.png"


def msmt17_rel_path(pid: int, cam: int, n: int = 0) -> str:
    """0000/0000_000_01_0303morning_0015_0.jpg style (camera 1-based, two digits)."""
    return f"{pid:04d}/{pid:04d}_{n:03d}_{cam:02d}_0303morning_{n:04d}_0.jpg"


def write_msmt17(root: str, version: str = "MSMT17_V1", train=(), val=(), query=(),
                 gallery=()) -> str:
    """An MSMT17 tree: entries are (pid, cam, n); writes images and list files."""
    train_dir, test_dir = {"MSMT17_V1": ("train", "test"),
                           "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}[version]
    base = os.path.join(root, version)
    for list_name, image_dir, entries in (("list_train.txt", train_dir, train),
                                          ("list_val.txt", train_dir, val),
                                          ("list_query.txt", test_dir, query),
                                          ("list_gallery.txt", test_dir, gallery)):
        lines = []
        for pid, cam, n in entries:
            rel = msmt17_rel_path(pid, cam, n)
            write_image(os.path.join(base, image_dir, rel))
            lines.append(f"{rel} {pid}\n")
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, list_name), "w", encoding="utf-8") as f:
            f.writelines(lines)
    return base


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(relative_path: str, module_name: str = None):
    """Import a script of the repository (e.g. "tools/compare.py") as a fresh module; its folder
    goes on sys.path first, as when the script runs, so its sibling imports work."""
    path = os.path.join(REPO_ROOT, relative_path)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = module_name or "script_" + relative_path.replace("/", "_").rsplit(".", 1)[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize_bn_stats(model, seed=0, variances=True):
    """Non-trivial BN running statistics (means, and variances unless ``variances`` is False),
    so that eval-mode BN is not the identity."""
    import mindspore as ms
    rng = np.random.RandomState(seed)
    for name, p in model.parameters_and_names():
        if name.endswith("moving_mean"):
            p.set_data(ms.Tensor(rng.randn(*p.shape).astype(np.float32) * 0.1))
        elif variances and name.endswith("moving_variance"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
