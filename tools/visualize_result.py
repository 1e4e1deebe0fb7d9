#!/usr/bin/env python
"""Rank lists as pictures: for chosen queries, the query and its top-k gallery images with green
(correct) / red (wrong) borders and their distances, one PNG per query.

Queries are chosen by average precision: the worst, the best and some at random; the choice
and its order are written on each picture (e.g. "worst AP #2 of 3").

From features saved by tools/extract_features.py (one .npz per folder)::

    python tools/visualize_result.py --query-features q.npz --gallery-features g.npz \\
        --output vis/ [--config-file cfg.yml] [--topk 10] [--num-worst 3 --num-best 3 --num-random 3]

or from one .npz holding queries then gallery, with the key ``num_query``::

    python tools/visualize_result.py --features test.npz --output vis/

or by running the model on two image folders::

    python tools/visualize_result.py --config-file cfg.yml --query-dir query/ \\
        --gallery-dir bounding_box_test/ --output vis/ MODEL.WEIGHTS model_final.ckpt

Features file keys (no pickle): ``global`` float32 (N, D); optionally ``local`` float32
(N, P, C) and any other feature; ``paths`` str (N,) image paths; ``pids`` int64 (N,);
``camids`` int64 (N,); and, for a single combined file, ``num_query`` (int, queries first).
The distance is the one the config's evaluator ranks with (TEST.EVALUATOR, TEST.METRIC,
TEST.DISTANCE); ``--rerank`` applies TEST.RERANK. Gallery samples the protocol leaves out (same
identity and camera as the query, junk pid -1) are not shown.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

NPZ_META = ("paths", "pids", "camids", "num_query")
GREEN = (0, 170, 0)
RED = (210, 0, 0)


# ----------------------------------------------------------------------------- inputs
def load_npz(path):
    """(features dict, paths list, pids, camids, num_query or None) of a features .npz."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Features file '{path}' does not exist: write it with "
                                "tools/extract_features.py")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("global", "paths", "pids", "camids") if k not in data.files]
        if missing:
            raise ValueError(f"'{path}' lacks the key(s) {missing}; expected global, paths, pids, "
                             "camids (and optionally local, num_query), as tools/extract_features.py "
                             "writes them")
        feats = {k: np.asarray(data[k], dtype=np.float32) for k in data.files if k not in NPZ_META}
        num_query = int(data["num_query"]) if "num_query" in data.files else None
        return (feats, [str(p) for p in data["paths"]], np.asarray(data["pids"], np.int64),
                np.asarray(data["camids"], np.int64), num_query)


def concat_sets(query, gallery):
    qf, qp, qpid, qcam, _ = query
    gf, gp, gpid, gcam, _ = gallery
    keys = sorted(set(qf) & set(gf))
    feats = {k: np.concatenate([qf[k], gf[k]]) for k in keys}
    return (feats, list(qp) + list(gp), np.concatenate([qpid, gpid]),
            np.concatenate([qcam, gcam]), len(qp))


def features_from_model(cfg, query_dir, gallery_dir, batch_size):
    """Run the model of ``cfg`` (MODEL.WEIGHTS) on both folders."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from extract_features import build_inference_model, extract_features
    from fastreid_ms.data.image_folder import EvalImageLoader, list_image_folder
    model = build_inference_model(cfg)
    loader = EvalImageLoader(cfg)
    sets = []
    for folder in (query_dir, gallery_dir):
        items = list_image_folder(folder)  # [(path, pid, camid), ...]
        paths, pids, camids = [i[0] for i in items], [i[1] for i in items], [i[2] for i in items]
        feats = extract_features(model, loader, paths, batch_size or cfg.TEST.IMS_PER_BATCH,
                                 flip=cfg.TEST.FLIP.ENABLED)
        sets.append((dict(feats), list(paths), np.asarray(pids), np.asarray(camids), None))
    return concat_sets(*sets)


def build_cfg(config_file, opts):
    from fastreid_ms.config import get_cfg
    cfg = get_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    if opts:
        cfg.merge_from_list(opts)
    return cfg


def compute_distance_matrix(cfg, feats, pids, camids, num_query, rerank=False):
    """(Q, G) distances the config's evaluator ranks with (re-ranked when asked)."""
    from fastreid_ms.evaluation import build_evaluator
    ev = build_evaluator(cfg, num_query)
    dist = ev.query_gallery_distance(feats, num_query)
    if rerank:
        dist = ev.rerank(feats, num_query, dist)
    return dist


# ----------------------------------------------------------------------------- choice
def choose_queries(ap, num_worst, num_best, num_random, seed=0):
    """[(label, query index)] by AP: worst first, best first, random (queries with a correct
    match only)."""
    valid = np.nonzero(~np.isnan(ap))[0]
    order = valid[np.lexsort((valid, ap[valid]))]
    chosen = []
    worst = order[:num_worst]
    best = order[::-1][:num_best]
    for i, q in enumerate(worst):
        chosen.append((f"worst AP #{i + 1} of {len(worst)}", int(q)))
    for i, q in enumerate(best):
        chosen.append((f"best AP #{i + 1} of {len(best)}", int(q)))
    rng = np.random.default_rng(seed)
    pool = np.setdiff1d(valid, np.concatenate([worst, best]))
    picks = rng.choice(pool, size=min(num_random, pool.size), replace=False) if pool.size else []
    for i, q in enumerate(picks):
        chosen.append((f"random #{i + 1} of {len(picks)}", int(q)))
    return chosen


def ranked_gallery(dist_row, q_pid, q_cam, g_pids, g_camids, topk):
    """Indices of the top-k gallery samples the protocol keeps, nearest first (stable)."""
    keep = ~(((g_pids == q_pid) & (g_camids == q_cam)) | (g_pids == -1))
    idx = np.nonzero(keep)[0]
    order = idx[np.argsort(dist_row[idx], kind="stable")]
    return order[:topk]


# ----------------------------------------------------------------------------- drawing
def _open_image(path, size):
    from PIL import Image
    w, h = size
    try:
        with Image.open(path) as img:
            return img.convert("RGB").resize((w, h))
    except (OSError, ValueError):
        placeholder = Image.new("RGB", (w, h), (200, 200, 200))
        from PIL import ImageDraw
        ImageDraw.Draw(placeholder).text((4, h // 2 - 6), "missing", fill=(60, 60, 60))
        return placeholder


def draw_rank_list(query_path, gallery_paths, correct, distances, title, size=(64, 128),
                   border=4, margin=6):
    """A PIL image: title line, then the query (blue border) and the gallery images with
    green/red borders, each with its rank and distance above it."""
    from PIL import Image, ImageDraw
    w, h = size
    cell_w, cell_h = w + 2 * border, h + 2 * border
    text_h = 14
    num = len(gallery_paths)
    width = margin + (num + 1) * (cell_w + margin) + margin
    height = margin + text_h + margin + text_h + cell_h + margin
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, margin), title, fill=(0, 0, 0))
    top = margin + text_h + margin

    def paste(col, path, color, caption):
        x0 = margin + col * (cell_w + margin) + (margin if col else 0)
        draw.text((x0, top), caption, fill=(0, 0, 0))
        draw.rectangle([x0, top + text_h, x0 + cell_w - 1, top + text_h + cell_h - 1], fill=color)
        canvas.paste(_open_image(path, size), (x0 + border, top + text_h + border))

    paste(0, query_path, (30, 80, 220), "query")
    for r, (path, ok, d) in enumerate(zip(gallery_paths, correct, distances), start=1):
        paste(r, path, GREEN if ok else RED, f"{r}: {d:.3f}")
    return canvas


def visualize(dist, paths, pids, camids, num_query, output_dir, topk=10, num_worst=3, num_best=3,
              num_random=3, seed=0, size=(64, 128)):
    """Write one PNG per chosen query into ``output_dir``; returns the written paths."""
    from fastreid_ms.evaluation.rank import per_query_metrics
    from fastreid_ms.utils.file_io import atomic_path
    q_pids, g_pids = pids[:num_query], pids[num_query:]
    q_cams, g_cams = camids[:num_query], camids[num_query:]
    ap, _ = per_query_metrics(dist, q_pids, g_pids, q_cams, g_cams)
    if np.isnan(ap).all():
        raise ValueError("No query has a correct match in the gallery: nothing to rank (check "
                         "that the pids of query and gallery images come from the same naming)")
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for label, q in choose_queries(ap, num_worst, num_best, num_random, seed):
        top = ranked_gallery(dist[q], q_pids[q], q_cams[q], g_pids, g_cams, topk)
        title = f"{label}: query {q} (pid {q_pids[q]}, cam {q_cams[q]}), AP {100 * ap[q]:.1f}%"
        img = draw_rank_list(paths[q], [paths[num_query + g] for g in top],
                             [bool(g_pids[g] == q_pids[q]) for g in top],
                             [float(dist[q, g]) for g in top], title, size=size)
        name = label.split(" #")[0].replace(" ", "_")
        rank_in_kind = label.split("#")[1].split(" ")[0]
        out_path = os.path.join(output_dir, f"{name}_{rank_in_kind}_query{q}.png")
        with atomic_path(out_path) as tmp:
            with open(tmp, "wb") as f:
                img.save(f, format="PNG")
        written.append(out_path)
    return written


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", help=".npz with queries then gallery and num_query")
    parser.add_argument("--query-features", help=".npz of the query images")
    parser.add_argument("--gallery-features", help=".npz of the gallery images")
    parser.add_argument("--query-dir", help="query image folder (runs the model)")
    parser.add_argument("--gallery-dir", help="gallery image folder (runs the model)")
    parser.add_argument("--config-file", default="", help="config (evaluator, distance, model)")
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--num-worst", type=int, default=3)
    parser.add_argument("--num-best", type=int, default=3)
    parser.add_argument("--num-random", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rerank", action="store_true", help="rank with TEST.RERANK")
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, default=[64, 128],
                        metavar=("W", "H"), help="size of each drawn image")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=None,
                        help="config overrides KEY VALUE, e.g. MODEL.WEIGHTS x.ckpt")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    import fastreid_ms  # noqa: F401  (CPU ISA before MindSpore runs)
    cfg = build_cfg(args.config_file, args.opts)
    if args.features:
        feats, paths, pids, camids, num_query = load_npz(args.features)
        if num_query is None:
            raise ValueError(f"'{args.features}' has no 'num_query' key: pass --query-features and "
                             "--gallery-features instead, or add num_query (queries first)")
    elif args.query_features and args.gallery_features:
        feats, paths, pids, camids, num_query = concat_sets(load_npz(args.query_features),
                                                            load_npz(args.gallery_features))
    elif args.query_dir and args.gallery_dir:
        if not cfg.MODEL.WEIGHTS:
            raise ValueError("Running the model needs MODEL.WEIGHTS (a trained checkpoint)")
        feats, paths, pids, camids, num_query = features_from_model(cfg, args.query_dir,
                                                                    args.gallery_dir,
                                                                    args.batch_size)
    else:
        raise SystemExit("Give --features, or --query-features and --gallery-features, or "
                         "--query-dir and --gallery-dir with --config-file and MODEL.WEIGHTS")
    if not 0 < num_query < len(paths):
        raise ValueError(f"num_query={num_query} with {len(paths)} samples: need queries and a "
                         "gallery")
    dist = compute_distance_matrix(cfg, feats, pids, camids, num_query, rerank=args.rerank)
    written = visualize(dist, paths, pids, camids, num_query, args.output, topk=args.topk,
                        num_worst=args.num_worst, num_best=args.num_best,
                        num_random=args.num_random, seed=args.seed,
                        size=tuple(args.image_size))
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
