#!/usr/bin/env python
"""Features (global and local) of a folder of images, saved as .npz.

    python tools/extract_features.py --config-file configs/Market1501/alignedpp_R50.yml \\
        --input my_images/ --output feats.npz [--batch-size 64] MODEL.WEIGHTS model_final.ckpt

The images are read as RGB and passed through the config's test transform (resize to
INPUT.SIZE_TEST, normalise), in batches; the model runs in eval mode (with TEST.FLIP.ENABLED
the features of each image and its mirror image are averaged). The .npz (no pickle) holds:

    global  float32 (N, D)      the global features
    local   float32 (N, P, C)   the local (part) features, when the model makes them
    <name>  float32 (N, ...)    any other feature the model returns
    paths   str (N,)            the image paths, sorted by file name
    pids    int64 (N,)          person ids parsed from Market1501-style names, else -1
    camids  int64 (N,)          0-based camera ids parsed likewise, else -1

tools/rank_gallery.py ranks such a gallery for a query image; tools/visualize_result.py
reads the same format.
"""
import argparse
import os
import sys
import time
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastreid_ms  # noqa: E402,F401  (sets the CPU kernel ISA before MindSpore runs)
from fastreid_ms.data.image_folder import EvalImageLoader, list_image_folder  # noqa: E402
from fastreid_ms.utils.file_io import atomic_path  # noqa: E402
from fastreid_ms.utils.logger import get_logger  # noqa: E402

NPZ_META_KEYS = ("paths", "pids", "camids")


def extract_features(model, image_loader: EvalImageLoader, paths, batch_size: int = 64,
                     flip: bool = False, log_every: int = 10):
    """OrderedDict {feature name: float32 (N, ...)} of ``paths`` with ``model`` in eval mode."""
    import mindspore as ms
    from mindspore import ops

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}.")
    logger = get_logger()
    model.set_train(False)
    chunks = OrderedDict()
    num_batches = (len(paths) + batch_size - 1) // batch_size
    start = time.perf_counter()
    for b in range(num_batches):
        batch_paths = paths[b * batch_size:(b + 1) * batch_size]
        images = ms.Tensor(image_loader.batch(batch_paths))
        feats = model(images)
        if flip:
            flipped = model(ops.flip(images, (3,)))
            feats = {k: (v + flipped[k]) / 2 for k, v in feats.items()}
        for name, value in feats.items():
            chunks.setdefault(name, []).append(value.asnumpy().astype(np.float32, copy=False))
        done = min((b + 1) * batch_size, len(paths))
        if log_every and ((b + 1) % log_every == 0 or b + 1 == num_batches):
            elapsed = time.perf_counter() - start
            rate = done / max(elapsed, 1e-9)
            eta = (len(paths) - done) / max(rate, 1e-9)
            logger.info("Extracted %d/%d images (%.1f images/s, ETA %.0f s)", done, len(paths), rate, eta)
    return OrderedDict((name, np.concatenate(parts)) for name, parts in chunks.items())


def save_features_npz(path: str, features, paths, pids, camids) -> str:
    """Write the .npz described in the module docstring, atomically; returns the path."""
    clash = [k for k in features if k in NPZ_META_KEYS]
    if clash:
        raise ValueError(f"Feature name(s) {clash} clash with the .npz keys {NPZ_META_KEYS}.")
    arrays = dict(features)
    arrays["paths"] = np.asarray([str(p) for p in paths], dtype=np.str_)
    arrays["pids"] = np.asarray(pids, dtype=np.int64)
    arrays["camids"] = np.asarray(camids, dtype=np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object, so numpy adds no ".npz" to the temp name
            np.savez(f, **arrays)
    return path


def load_features_npz(path: str):
    """(features OrderedDict, paths list, pids (N,), camids (N,)) of a file from save_features_npz."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Feature file '{path}' does not exist: write it with "
                                "tools/extract_features.py.")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in NPZ_META_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"'{path}' lacks {missing}: it was not written by tools/extract_features.py.")
        feats = OrderedDict((k, data[k]) for k in data.files if k not in NPZ_META_KEYS)
        return feats, [str(p) for p in data["paths"]], data["pids"], data["camids"]


def build_inference_model(cfg):
    """build_model(cfg) with MODEL.WEIGHTS loaded, in eval mode, on the config's device."""
    from fastreid_ms.modeling import build_model
    from fastreid_ms.modeling.export_wrapper import load_inference_weights
    from fastreid_ms.utils.env import resolve_device, set_mindspore_context
    set_mindspore_context(resolve_device(cfg.MODEL.DEVICE), cfg.MODEL.MODE)
    model = build_model(cfg)
    load_inference_weights(model, cfg.MODEL.WEIGHTS)
    model.set_train(False)
    return model


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a config file")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="images per batch (default TEST.IMS_PER_BATCH)")
    parser.add_argument("opts", default=None, nargs="*",
                        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS x.ckpt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Extract global and local features of a folder of images into a .npz.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example:\n  python tools/extract_features.py --config-file cfg.yml --input imgs/ "
               "--output feats.npz MODEL.WEIGHTS model_final.ckpt\n")
    parser.add_argument("--input", required=True, help="folder of images (.jpg, .png, ...)")
    parser.add_argument("--output", required=True, help="the .npz to write")
    add_model_arguments(parser)
    return parser


def main(argv=None) -> str:
    # Options may come before or after the KEY VALUE overrides.
    args = build_parser().parse_intermixed_args(argv)
    from fastreid_ms.engine.defaults import setup_cfg
    from fastreid_ms.utils.logger import setup_logger
    cfg = setup_cfg(args)
    logger = setup_logger(None)
    items = list_image_folder(args.input, drop_junk=False)
    model = build_inference_model(cfg)
    paths = [p for p, _, _ in items]
    feats = extract_features(model, EvalImageLoader(cfg), paths,
                             args.batch_size or cfg.TEST.IMS_PER_BATCH, cfg.TEST.FLIP.ENABLED)
    out = args.output if args.output.endswith(".npz") else args.output + ".npz"
    save_features_npz(out, feats, paths, [i[1] for i in items], [i[2] for i in items])
    logger.info("Saved %s of %d images to %s",
                ", ".join(f"{k} {v.shape[1:]}" for k, v in feats.items()), len(paths), out)
    return out


if __name__ == "__main__":
    from fastreid_ms.utils.cli import run_cli
    sys.exit(run_cli(main, "extract_features.py"))
