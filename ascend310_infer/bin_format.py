"""The files exchanged by preprocess.py, the inference programs and postprocess.py.

    <prep>/<split>/<stem>.bin           float32 C x H x W image, resized and normalised
    <prep>/<split>/image_shape.txt      "C H W"
    <prep>/<split>_list.txt             one line per image: "stem pid camid path"
                                        (pid / camid -1 when the name does not parse)
    <result>/<split>/<stem>_<k>.bin     float32 slice of model output k for that image
    <result>/<split>/output_shapes.txt  one line per output: "k d1 d2 ..." (batch dropped)

<split> is "query" or "gallery". src/main.cc (C++) and infer_mindir.py (Python) write the
result files identically.
"""
import os
from typing import List, Sequence, Tuple

IMAGE_SHAPE_FILE = "image_shape.txt"
OUTPUT_SHAPES_FILE = "output_shapes.txt"
SPLITS = ("query", "gallery")


def list_file(prep_dir: str, split: str) -> str:
    """Path of the list file of ``split`` in a preprocess folder."""
    return os.path.join(prep_dir, f"{split}_list.txt")


def list_bin_files(folder: str) -> List[str]:
    """Sorted paths of the ``*.bin`` files directly in ``folder`` (the C++ program's order)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Input folder '{folder}' does not exist: pass a folder written "
                                "by ascend310_infer/preprocess.py (e.g. prep/query).")
    names = sorted(n for n in os.listdir(folder)
                   if n.endswith(".bin") and not n.startswith(".")
                   and os.path.isfile(os.path.join(folder, n)))
    if not names:
        raise FileNotFoundError(f"No .bin files in '{folder}': run ascend310_infer/preprocess.py first.")
    return [os.path.join(folder, n) for n in names]


def write_list(path: str, rows: Sequence[Tuple[str, int, int, str]]) -> None:
    """Write rows (stem, pid, camid, image path)."""
    with open(path, "w", encoding="utf-8") as f:
        for stem, pid, camid, image_path in rows:
            f.write(f"{stem} {int(pid)} {int(camid)} {image_path}\n")


def read_list(path: str) -> List[Tuple[str, int, int, str]]:
    """Rows (stem, pid, camid, image path) of a list file written by preprocess.py."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"List file '{path}' is missing: pass the --output-dir of "
                                "ascend310_infer/preprocess.py.")
    rows = []
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split(" ", 3)
            try:
                rows.append((parts[0], int(parts[1]), int(parts[2]),
                             parts[3] if len(parts) > 3 else ""))
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{lineno}: expected 'stem pid camid path', got '{line}'.") from None
    if not rows:
        raise ValueError(f"List file '{path}' lists no images.")
    return rows


def write_shape_file(path: str, shapes: Sequence[Sequence[int]], indexed: bool) -> None:
    """One shape per line, prefixed by its index when ``indexed`` (output_shapes.txt)."""
    with open(path, "w", encoding="utf-8") as f:
        for k, shape in enumerate(shapes):
            values = ([k] if indexed else []) + [int(v) for v in shape]
            f.write(" ".join(str(v) for v in values) + "\n")


def read_image_shape(folder: str) -> Tuple[int, int, int]:
    """(C, H, W) from ``folder/image_shape.txt``."""
    path = os.path.join(folder, IMAGE_SHAPE_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"'{path}' is missing: pass --image-size H W (INPUT.SIZE_TEST) or "
                                "use a folder written by ascend310_infer/preprocess.py.")
    with open(path, "r", encoding="utf-8") as f:
        dims = tuple(int(v) for v in f.read().split())
    if len(dims) != 3:
        raise ValueError(f"'{path}' must hold 'C H W', found {dims}.")
    return dims


def read_output_shapes(folder: str) -> List[Tuple[int, ...]]:
    """Per-image shapes of outputs 0..K-1 from ``folder/output_shapes.txt``."""
    path = os.path.join(folder, OUTPUT_SHAPES_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"'{path}' is missing: run the inference program "
                                "(fastreid_infer or infer_mindir.py) with this --output_path first.")
    shapes = {}
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            values = [int(v) for v in line.split()]
            if values:
                shapes[values[0]] = tuple(values[1:])
    if not shapes or sorted(shapes) != list(range(len(shapes))):
        raise ValueError(f"'{path}' must list outputs 0..K-1, found {sorted(shapes)}.")
    return [shapes[k] for k in range(len(shapes))]
