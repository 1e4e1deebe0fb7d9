#!/usr/bin/env python
"""Export a trained model's eval graph to MINDIR, AIR or ONNX.

    python tools/export.py --config-file configs/Market1501/alignedpp_R50.yml \\
        --format MINDIR --output exports/alignedpp_R50 [--batch-size 1 | --batch-size dynamic] \\
        MODEL.WEIGHTS logs/market1501/alignedpp_R50/model_final.ckpt

The graph takes float32 images (N, 3, H, W) with H, W = INPUT.SIZE_TEST, resized and
normalised as the test transform does (ascend310_infer/preprocess.py writes such inputs),
and returns a tuple of features in a fixed order: (global (N, D), local (N, P, C)) for
AlignedReID++ (see fastreid_ms/modeling/export_wrapper.py); with TEST.FLIP.ENABLED the
graph averages them with those of the mirrored images, as the evaluation does. A dynamic
batch is available for MINDIR and ONNX; AIR needs an Ascend device and a fixed batch. The
file is written atomically (a temporary file beside it, renamed when complete).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastreid_ms  # noqa: E402,F401  (sets the CPU kernel ISA before MindSpore runs)
from fastreid_ms.engine.defaults import setup_cfg  # noqa: E402
from fastreid_ms.modeling.export_wrapper import (  # noqa: E402
    EXPORT_FORMATS, check_format, export_inference_model, load_inference_weights, parse_batch_size)
from fastreid_ms.utils.cli import USER_ERRORS, run_cli  # noqa: E402
from fastreid_ms.utils.env import resolve_device, set_mindspore_context  # noqa: E402
from fastreid_ms.utils.logger import setup_logger  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export the eval graph (global and local features) to MINDIR / AIR / ONNX.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  python tools/export.py --config-file configs/Market1501/alignedpp_R50.yml \\\n"
            "      --format MINDIR --output alignedpp MODEL.WEIGHTS model_final.ckpt\n"
            "  python tools/export.py --config-file ... --format ONNX --batch-size dynamic \\\n"
            "      --output alignedpp MODEL.WEIGHTS model_final.ckpt\n"))
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a config file")
    parser.add_argument("--format", "--file_format", dest="format", default="MINDIR",
                        type=str.upper, choices=EXPORT_FORMATS,
                        help="MINDIR (any device), AIR (Ascend only) or ONNX (default MINDIR)")
    parser.add_argument("--output", "--file_name", dest="output", default="",
                        help="output file; the suffix (.mindir/.air/.onnx) is added when missing "
                             "(default: OUTPUT_DIR/model)")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", default="1",
                        help="fixed batch N (default 1, as Ascend 310 runs it) or 'dynamic' "
                             "(MINDIR, ONNX)")
    parser.add_argument("--ckpt_file", "--ckpt-file", dest="ckpt_file", default="",
                        help="checkpoint to export (same as MODEL.WEIGHTS)")
    parser.add_argument("opts", default=None, nargs="*",
                        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS x.ckpt")
    return parser


def main(argv=None) -> str:
    """Parse ``argv``, export, return the path written. Raises on errors (see ``cli``)."""
    # Options may come before or after the KEY VALUE overrides.
    args = build_parser().parse_intermixed_args(argv)
    if args.ckpt_file:
        args.opts = list(args.opts or []) + ["MODEL.WEIGHTS", args.ckpt_file]
    batch_size = parse_batch_size(args.batch_size)
    cfg = setup_cfg(args)
    logger = setup_logger(None)
    set_mindspore_context(resolve_device(cfg.MODEL.DEVICE), "GRAPH")
    check_format(args.format, batch_size)  # AIR off Ascend fails here, before building the model

    from fastreid_ms.modeling import build_model
    model = build_model(cfg)
    load_inference_weights(model, cfg.MODEL.WEIGHTS)
    model.set_train(False)
    output = args.output or os.path.join(cfg.OUTPUT_DIR, "model")
    path, names = export_inference_model(model, args.format, output, cfg.INPUT.SIZE_TEST,
                                         batch_size=batch_size, flip=bool(cfg.TEST.FLIP.ENABLED))
    logger.info("Outputs in order: %s", ", ".join(f"{k}: {n}" for k, n in enumerate(names)))
    print(path)
    return path


def cli() -> int:
    return run_cli(main, "export.py", errors=USER_ERRORS + (TypeError,))


if __name__ == "__main__":
    sys.exit(cli())
