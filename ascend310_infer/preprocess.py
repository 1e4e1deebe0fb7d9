#!/usr/bin/env python
"""Images -> the float32 binaries the Ascend 310 program (and infer_mindir.py) read.

    python ascend310_infer/preprocess.py --config-file configs/Market1501/alignedpp_R50.yml \\
        --query-dir Market-1501-v15.09.15/query --gallery-dir Market-1501-v15.09.15/bounding_box_test \\
        --output-dir prep [KEY VALUE ...]

Each image is read as RGB and passed through the config's test transform (resize to
INPUT.SIZE_TEST, normalise with INPUT.PIXEL_MEAN / PIXEL_STD, CHW), exactly as the test
loader does, and written as ``<output-dir>/<split>/<stem>.bin`` (float32 3 x H x W), with
``<split>/image_shape.txt`` and ``<split>_list.txt`` (lines "stem pid camid path"; pid and
camid from Market1501-style names, -1 otherwise). As the dataset classes do, junk images
(pid -1) are left out, and distractors (pid 0) are left out of the query. Each split folder
is filled in a temporary folder and renamed into place when complete.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastreid_ms  # noqa: E402,F401
from bin_format import IMAGE_SHAPE_FILE, SPLITS, list_file, write_list, write_shape_file  # noqa: E402
from fastreid_ms.data.image_folder import EvalImageLoader, list_image_folder  # noqa: E402
from fastreid_ms.utils.file_io import atomic_path  # noqa: E402


def preprocess_split(loader: EvalImageLoader, image_dir: str, out_dir: str, list_path: str,
                     is_query: bool, log_every: int = 500):
    """Write the binaries of one folder; returns its rows (stem, pid, camid, path)."""
    items = list_image_folder(image_dir, drop_junk=True, drop_distractors=is_query)
    stems = {}
    for path, _, _ in items:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise ValueError(f"'{stems[stem]}' and '{path}' have the same name stem '{stem}': "
                             "rename one (the binaries are named after the stem).")
        stems[stem] = path
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
    rows, shape = [], None
    start = time.perf_counter()
    try:
        for i, (path, pid, camid) in enumerate(items):
            arr = loader(path)
            if shape is None:
                shape = arr.shape
            stem = os.path.splitext(os.path.basename(path))[0]
            arr.tofile(os.path.join(tmp_dir, f"{stem}.bin"))
            rows.append((stem, pid, camid, os.path.abspath(path)))
            if log_every and ((i + 1) % log_every == 0 or i + 1 == len(items)):
                rate = (i + 1) / max(time.perf_counter() - start, 1e-9)
                print(f"[preprocess] {os.path.basename(out_dir)}: {i + 1}/{len(items)} images "
                      f"({rate:.0f} images/s)", flush=True)
        write_shape_file(os.path.join(tmp_dir, IMAGE_SHAPE_FILE), [shape], indexed=False)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    with atomic_path(list_path) as tmp:
        write_list(tmp, rows)
    return rows


def preprocess(cfg, query_dir: str, gallery_dir: str, output_dir: str):
    """Both splits; returns {split: rows}."""
    loader = EvalImageLoader(cfg)
    out = {}
    for split, folder in zip(SPLITS, (query_dir, gallery_dir)):
        out[split] = preprocess_split(loader, folder, os.path.join(output_dir, split),
                                      list_file(output_dir, split), is_query=split == "query")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Images -> float32 .bin inputs of the Ascend 310 program.")
    parser.add_argument("--config-file", default="", metavar="FILE",
                        help="the config of the exported model (INPUT.SIZE_TEST, PIXEL_MEAN/STD)")
    parser.add_argument("--query-dir", required=True, help="folder of query images")
    parser.add_argument("--gallery-dir", required=True, help="folder of gallery images")
    parser.add_argument("--output-dir", required=True, help="where query/, gallery/ and the lists go")
    parser.add_argument("opts", default=None, nargs="*",
                        help="config overrides as KEY VALUE pairs")
    return parser


def main(argv=None):
    # Options may come before or after the KEY VALUE overrides.
    args = build_parser().parse_intermixed_args(argv)
    from fastreid_ms.engine.defaults import setup_cfg
    cfg = setup_cfg(args)
    out = preprocess(cfg, args.query_dir, args.gallery_dir, args.output_dir)
    print(f"[preprocess] {len(out['query'])} query and {len(out['gallery'])} gallery images "
          f"-> {args.output_dir} (INPUT.SIZE_TEST {list(cfg.INPUT.SIZE_TEST)})")
    return out


if __name__ == "__main__":
    from fastreid_ms.utils.cli import run_cli
    sys.exit(run_cli(main, "preprocess.py"))
