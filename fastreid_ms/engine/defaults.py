"""Command line and process set-up shared by the tools.

``default_argument_parser`` gives every entry point the same flags; ``default_setup``
prepares OUTPUT_DIR, logging, seeds and the MindSpore context.
"""
import argparse
import os
import platform
import sys

import numpy as np

from ..config import get_cfg
from ..utils import comm
from ..utils.blas import BLAS_NOTE
from ..utils.env import (CPU_ISA_NOTE, resolve_device, seed_all_rng, set_mindspore_context,
                         thread_note)
from ..utils.file_io import atomic_write_text
from ..utils.logger import setup_logger


def default_argument_parser(description: str = None) -> argparse.ArgumentParser:
    """Flags shared by the entry points: --config-file, --resume, --eval-only, KEY VALUE overrides."""
    parser = argparse.ArgumentParser(
        description=description or "fastreid_ms training and evaluation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  python tools/train_net.py --config-file configs/Market1501/alignedpp_R50.yml\n"
            "  python tools/train_net.py --config-file configs/Market1501/alignedpp_R50.yml \\\n"
            "      --eval-only MODEL.WEIGHTS logs/market1501/alignedpp_R50/model_final.ckpt \\\n"
            "      TEST.RERANK.ENABLED True\n"
            "  msrun --worker_num=8 --local_worker_num=8 tools/train_net.py --config-file ...\n"),
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a config file")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in OUTPUT_DIR")
    parser.add_argument("--eval-only", action="store_true",
                        help="evaluate MODEL.WEIGHTS on the test sets without training")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. SOLVER.BASE_LR 0.01")
    parser.parse_args = _flags_anywhere(parser.parse_args)
    return parser


def _flags_anywhere(parse_args):
    """Let --resume / --eval-only also come after the KEY VALUE overrides (argparse's
    REMAINDER would otherwise take them as overrides)."""
    def parse(args=None, namespace=None):
        ns = parse_args(args, namespace)
        opts = []
        for item in ns.opts or []:
            if item in ("--resume", "--eval-only"):
                setattr(ns, item[2:].replace("-", "_"), True)
            else:
                opts.append(item)
        ns.opts = opts
        return ns
    return parse


def setup_cfg(args):
    """Build the config from --config-file and the trailing overrides; freeze it."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    return cfg


def collect_env_info(device: str) -> str:
    """Versions and the device / CPU kernel choice, one per line."""
    import mindspore as ms
    lines = [
        f"Python: {sys.version.split()[0]} ({platform.platform()})",
        f"MindSpore: {ms.__version__}",
        f"NumPy: {np.__version__}",
        f"Device target: {device}",
        f"CPU kernels: {CPU_ISA_NOTE['message']}",
        f"NumPy BLAS: {BLAS_NOTE['message']}",
        f"CPU threads: {thread_note()}",
    ]
    return "\n".join(lines)


def default_setup(cfg, args):
    """Create OUTPUT_DIR, set up the rank-aware logger, log the environment and config,
    dump OUTPUT_DIR/config.yaml (rank 0), seed every RNG and set the MindSpore context.

    Returns the logger.
    """
    rank = comm.get_rank()
    output_dir = cfg.OUTPUT_DIR
    if output_dir and rank == 0:
        os.makedirs(output_dir, exist_ok=True)
    logger = setup_logger(output_dir, distributed_rank=rank)
    device = resolve_device(cfg.MODEL.DEVICE)
    logger.info("Rank %d of %d", rank, comm.get_world_size())
    logger.info("Environment:\n%s", collect_env_info(device))
    logger.info("Command line arguments: %s", args)
    if getattr(args, "config_file", ""):
        with open(args.config_file, "r", encoding="utf-8") as f:
            logger.info("Contents of %s:\n%s", args.config_file, f.read())
    logger.info("Running with full config:\n%s", cfg.dump())
    if output_dir and rank == 0:
        path = os.path.join(output_dir, "config.yaml")
        atomic_write_text(path, cfg.dump())
        logger.info("Full config saved to %s", os.path.abspath(path))
    seed = seed_all_rng(cfg.SEED)
    logger.info("Random seed: %d", seed)
    set_mindspore_context(device, cfg.MODEL.MODE)
    return logger
