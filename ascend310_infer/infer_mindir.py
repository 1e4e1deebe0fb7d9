#!/usr/bin/env python
"""Run an exported MINDIR on preprocessed images from Python (mindspore.load + nn.GraphCell).

It reads and writes exactly the files of the C++ program (src/main.cc), so the Ascend 310
chain can run (and be tested) on any device MindSpore supports:

    python ascend310_infer/infer_mindir.py --mindir_path model.mindir \\
        --input_path prep/query --output_path result_Files/query [--batch-size N] [--device CPU]

Input: ``<input_path>/<stem>.bin`` (float32 C x H x W, from preprocess.py) and
``<input_path>/image_shape.txt`` ("C H W"; or pass --image-size H W).
Output: ``<output_path>/<stem>_<k>.bin`` (float32, image's slice of output k) and
``<output_path>/output_shapes.txt`` (a line "k d1 d2 ..." per output). The output folder is
filled in a temporary folder beside it and renamed into place when complete.

--batch-size must equal the export's fixed batch (default 1); a dynamic-batch MINDIR takes
any. The last batch is padded with zeros whose outputs are dropped, as the C++ program does.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastreid_ms  # noqa: E402,F401  (sets the CPU kernel ISA before MindSpore runs)
from bin_format import (OUTPUT_SHAPES_FILE, list_bin_files, read_image_shape,  # noqa: E402
                        write_shape_file)


def image_shape_of(folder: str, image_size=None):
    """(C, H, W) from --image-size H W, else from ``folder/image_shape.txt``."""
    if image_size:
        return (3, int(image_size[0]), int(image_size[1]))
    return read_image_shape(folder)


def run_mindir(mindir_path: str, input_path: str, output_path: str, batch_size: int = 1,
               image_size=None, log_every: int = 20) -> int:
    """Extract the features of every image of ``input_path``; returns the number of images."""
    import mindspore as ms
    from mindspore import nn

    if not os.path.isfile(mindir_path):
        raise FileNotFoundError(f"MINDIR '{mindir_path}' does not exist: export one with "
                                "tools/export.py --format MINDIR.")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}.")
    files = list_bin_files(input_path)
    image_shape = image_shape_of(input_path, image_size)
    image_elems = int(np.prod(image_shape))
    graph = nn.GraphCell(ms.load(mindir_path))

    output_path = os.path.abspath(output_path)
    parent = os.path.dirname(output_path)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(output_path)}.", suffix=".tmp", dir=parent)
    try:
        shapes = None
        start_time = time.perf_counter()
        num_batches = (len(files) + batch_size - 1) // batch_size
        for b, start in enumerate(range(0, len(files), batch_size)):
            chunk = files[start:start + batch_size]
            batch = np.zeros((batch_size, *image_shape), np.float32)
            for j, path in enumerate(chunk):
                data = np.fromfile(path, dtype=np.float32)
                if data.size != image_elems:
                    raise ValueError(
                        f"'{path}' holds {data.size} float32 values, expected {image_elems} "
                        f"({'x'.join(map(str, image_shape))}): preprocess with the export's "
                        "INPUT.SIZE_TEST.")
                batch[j] = data.reshape(image_shape)
            try:
                outputs = graph(ms.Tensor(batch))
            except (RuntimeError, ValueError, TypeError) as exc:
                raise RuntimeError(
                    f"Running '{mindir_path}' on a batch of {batch_size} failed ({exc}). A MINDIR "
                    "exported with a fixed batch needs --batch-size equal to the export's.") from exc
            if not isinstance(outputs, (tuple, list)):
                outputs = (outputs,)
            arrays = [o.asnumpy().astype(np.float32, copy=False) for o in outputs]
            if shapes is None:
                shapes = [a.shape[1:] for a in arrays]
            for k, arr in enumerate(arrays):
                if arr.shape[0] != batch_size:
                    raise RuntimeError(f"Output {k} has shape {arr.shape}; its first dimension "
                                       f"must be the batch ({batch_size}).")
                for j, path in enumerate(chunk):
                    stem = os.path.splitext(os.path.basename(path))[0]
                    np.ascontiguousarray(arr[j]).tofile(os.path.join(tmp_dir, f"{stem}_{k}.bin"))
            if log_every and ((b + 1) % log_every == 0 or b + 1 == num_batches):
                done = min(start + batch_size, len(files))
                rate = done / max(time.perf_counter() - start_time, 1e-9)
                print(f"[infer_mindir] {done}/{len(files)} images ({rate:.1f} images/s)", flush=True)
        write_shape_file(os.path.join(tmp_dir, OUTPUT_SHAPES_FILE), shapes, indexed=True)
        if os.path.isdir(output_path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(output_path)}.old.", dir=parent)
            os.replace(output_path, os.path.join(old, "previous"))
            os.replace(tmp_dir, output_path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, output_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return len(files)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mindir_path", "--mindir-path", dest="mindir_path", required=True,
                        help="MINDIR from tools/export.py")
    parser.add_argument("--input_path", "--input-path", dest="input_path", required=True,
                        help="folder of <stem>.bin images from preprocess.py")
    parser.add_argument("--output_path", "--output-path", dest="output_path", required=True,
                        help="folder receiving <stem>_<k>.bin and output_shapes.txt")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=1,
                        help="images per call: the export's fixed batch, any for a dynamic one")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="input height and width (default: read image_shape.txt)")
    parser.add_argument("--device", default=os.environ.get("FASTREID_DEVICE", "CPU"),
                        help="CPU, GPU or Ascend (default CPU or $FASTREID_DEVICE)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from fastreid_ms.utils.env import normalize_device, set_mindspore_context
    set_mindspore_context(normalize_device(args.device), "GRAPH")
    n = run_mindir(args.mindir_path, args.input_path, args.output_path, args.batch_size,
                   args.image_size)
    print(f"[infer_mindir] wrote features of {n} images to {args.output_path}")
    return 0


if __name__ == "__main__":
    from fastreid_ms.utils.cli import run_cli
    sys.exit(run_cli(main, "infer_mindir.py", errors=(FileNotFoundError, ValueError, RuntimeError)))
