#!/usr/bin/env python
"""Rank a gallery of images for one query image and print the top-k with their distances.

    python tools/rank_gallery.py --config-file configs/Market1501/alignedpp_R50.yml \\
        --query person.jpg --gallery gallery_images/ [--topk 10] MODEL.WEIGHTS model_final.ckpt

    # or with gallery features saved by tools/extract_features.py:
    python tools/rank_gallery.py --config-file ... --query person.jpg \\
        --gallery-features gallery.npz MODEL.WEIGHTS model_final.ckpt

The distance is the one the config's evaluator ranks with (TEST.EVALUATOR): for ReidEvaluator
the global feature distance (TEST.METRIC), for AlignedReID++ the TEST.DISTANCE choice of
global, DMLI local or their sum. Re-ranking is not applied (it needs the whole query set).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastreid_ms  # noqa: E402,F401
from extract_features import (add_model_arguments, build_inference_model,  # noqa: E402
                              extract_features, load_features_npz)
from fastreid_ms.data.image_folder import EvalImageLoader, list_image_folder, parse_image_name  # noqa: E402

def query_gallery_distance(query_feats, gallery_feats, cfg) -> np.ndarray:
    """(M, N) float32 distances of query to gallery features (dicts of arrays), computed by the
    config's evaluator (TEST.EVALUATOR), so that the ranking is the evaluation's."""
    from fastreid_ms.evaluation import build_evaluator
    missing = [k for k in query_feats if k not in gallery_feats]
    if missing:
        raise ValueError(f"The gallery features lack {missing}: extract them with the same model.")
    num_query = len(next(iter(query_feats.values())))
    feats = {k: np.concatenate([query_feats[k], gallery_feats[k]]) for k in query_feats}
    evaluator = build_evaluator(cfg, num_query)
    return np.asarray(evaluator.query_gallery_distance(feats, num_query), dtype=np.float32)


def rank_gallery(query_feats, gallery_feats, gallery_paths, cfg, topk: int = 10):
    """Top-k gallery entries for the single query: list of (rank, distance, index, path)."""
    dist = query_gallery_distance(query_feats, gallery_feats, cfg)[0]
    order = np.argsort(dist, kind="stable")[:max(1, int(topk))]
    return [(r + 1, float(dist[i]), int(i), gallery_paths[i]) for r, i in enumerate(order)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Rank a gallery for a query image (top-k with distances).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--query", required=True, help="the query image")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--gallery", help="folder of gallery images")
    source.add_argument("--gallery-features", help=".npz from tools/extract_features.py")
    parser.add_argument("--topk", type=int, default=10, help="entries to print (default 10)")
    add_model_arguments(parser)
    return parser


def main(argv=None):
    from tabulate import tabulate
    from fastreid_ms.engine.defaults import setup_cfg
    from fastreid_ms.utils.logger import setup_logger

    # Options may come before or after the KEY VALUE overrides.
    args = build_parser().parse_intermixed_args(argv)
    cfg = setup_cfg(args)
    setup_logger(None)
    if not os.path.isfile(args.query):
        raise FileNotFoundError(f"Query image '{args.query}' does not exist.")
    model = build_inference_model(cfg)
    loader = EvalImageLoader(cfg)
    batch = args.batch_size or cfg.TEST.IMS_PER_BATCH
    query_feats = extract_features(model, loader, [args.query], 1, cfg.TEST.FLIP.ENABLED, log_every=0)
    if args.gallery_features:
        gallery_feats, paths, pids, camids = load_features_npz(args.gallery_features)
    else:
        items = list_image_folder(args.gallery, drop_junk=False)
        paths = [p for p, _, _ in items]
        pids = [p for _, p, _ in items]
        camids = [c for _, _, c in items]
        gallery_feats = extract_features(model, loader, paths, batch, cfg.TEST.FLIP.ENABLED)
    ranked = rank_gallery(query_feats, gallery_feats, paths, cfg, args.topk)
    q_pid, q_cam = parse_image_name(args.query)
    rows = []
    for rank, dist, i, path in ranked:
        match = ""
        if q_pid >= 0 and int(pids[i]) >= 0:
            match = "same id" if int(pids[i]) == q_pid else ""
        rows.append((rank, f"{dist:.4f}", int(pids[i]), int(camids[i]), match, path))
    print(f"Query: {args.query} (pid {q_pid}, camid {q_cam}); {cfg.TEST.EVALUATOR}, "
          f"{len(paths)} gallery images")
    print(tabulate(rows, headers=["rank", "distance", "pid", "camid", "", "path"], tablefmt="pipe"))
    return ranked


if __name__ == "__main__":
    from fastreid_ms.utils.cli import run_cli
    sys.exit(run_cli(main, "rank_gallery.py"))
