#!/usr/bin/env python
"""Rank a gallery of images for one query image and print the top-k with their distances.

    python tools/rank_gallery.py --config-file configs/Market1501/alignedpp_R50.yml \\
        --query person.jpg --gallery gallery_images/ [--topk 10] MODEL.WEIGHTS model_final.ckpt

    # or with gallery features saved by tools/extract_features.py:
    python tools/rank_gallery.py --config-file ... --query person.jpg \\
        --gallery-features gallery.npz MODEL.WEIGHTS model_final.ckpt

The distance is the evaluation's: the global feature distance (TEST.METRIC: squared
euclidean or cosine) for TEST.DISTANCE "global", the DMLI local distance
(TEST.LOCAL.ALIGNED) for "local", their sum for "global_local" (AlignedReID++ configs).
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

DISTANCE_MODES = ("global", "local", "global_local")


def query_gallery_distance(query_feats, gallery_feats, cfg) -> np.ndarray:
    """(M, N) float32 distances of query to gallery features (dicts of arrays) per the config."""
    from fastreid_ms.evaluation.distance import compute_distance
    mode = str(cfg.TEST.get("DISTANCE", "global"))
    if mode not in DISTANCE_MODES:
        raise ValueError(f"TEST.DISTANCE '{mode}' is not one of {DISTANCE_MODES}.")
    dist = None
    if mode in ("global", "global_local"):
        dist = compute_distance(query_feats["global"], gallery_feats["global"], cfg.TEST.METRIC)
    if mode in ("local", "global_local"):
        if "local" not in query_feats or "local" not in gallery_feats:
            raise ValueError(f"TEST.DISTANCE '{mode}' needs local features, and the model / file "
                             "has none: use TEST.DISTANCE global.")
        from projects.AlignedReIDpp.alignedreidpp.dmli import dmli_distance
        local = dmli_distance(query_feats["local"], gallery_feats["local"],
                              aligned=bool(cfg.TEST.LOCAL.ALIGNED))
        dist = local if dist is None else dist + local
    return np.asarray(dist, dtype=np.float32)


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

    args = build_parser().parse_args(argv)
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
    print(f"Query: {args.query} (pid {q_pid}, camid {q_cam}); TEST.DISTANCE "
          f"{cfg.TEST.get('DISTANCE', 'global')}, {len(paths)} gallery images")
    print(tabulate(rows, headers=["rank", "distance", "pid", "camid", "", "path"], tablefmt="pipe"))
    return ranked


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"rank_gallery.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
