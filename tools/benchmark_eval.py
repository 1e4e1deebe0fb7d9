#!/usr/bin/env python
"""Benchmark of the evaluation pipeline: ours (exact and candidate re-ranking) against a
faithful numpy re-implementation of the seed's pipeline (tools/seed_eval_reference.py), on
synthetic features of Market-1501 size (or MSMT17 size with --msmt).

Features: identities with part prototypes (P+2 stripes; each image sees P of them, shifted, so
alignment matters), camera biases and noise; the 2048-d global feature is a projection of the
parts plus an identity term and noise, so global and local distances agree as in a trained
model. Some gallery samples are distractors (pid 0) and junk (pid -1; the seed's data loader
drops junk, so the seed pipeline gets the gallery without it).

Every pipeline runs in its own subprocess, so that its peak memory (RSS high-water mark) is
clean; stage times come from the evaluator. Our pipelines receive the features in batches of
128 read from disk, as from a test loader (the seed pipeline gets them as whole arrays). Our
pipelines first run once on 200 queries x 1,200 gallery samples, untimed, so that the numba
kernels' compilation (on their first use after a change, or in a fresh clone) is not counted.
Examples::

    python tools/benchmark_eval.py --scale 0.2              # quick: about a minute
    python tools/benchmark_eval.py                          # full Market-1501 size, seed included
    python tools/benchmark_eval.py --msmt                   # MSMT17 size, candidate mode only

Stages: ``global`` (query x gallery global distance), ``local_qg`` (DMLI query x gallery),
``rank`` (CMC / mAP), ``local_qq`` (query x query distances), ``local_gg`` (gallery x gallery:
exact mode, every pair's DMLI + global distance streamed into the neighbour lists; candidate
mode, one threaded scan of the gallery's global distances for each sample's K nearest, then the
DMLI of those pairs only), ``rerank`` (the rest: neighbour lists from the query x gallery
distances, k-reciprocal sets, Jaccard distance), ``RK rank``.
The candidate mode keeps the query x gallery and query x query distances exact, so only the
"RK" metrics may differ from the exact mode; how much depends on --candidates (neighbour lists by
the global distance must hold each gallery sample's k1+1 nearest by the global + local distance).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import fastreid_ms  # noqa: E402,F401  (OpenBLAS kernel choice before NumPy loads)
import numpy as np  # noqa: E402

MARKET = {"num_query": 3368, "num_gallery": 15913, "num_ids": 751, "num_cams": 6}
MSMT = {"num_query": 11659, "num_gallery": 82161, "num_ids": 3060, "num_cams": 15}
RANKS = (1, 5, 10, 20)
PARTS = 8
# Spectrum of the parts: variance of coordinate k proportional to k^-SPECTRUM_POWER. 1.5 is the
# power law of the trained demo model's real parts (8 x 128: the top 8 / 32 principal directions
# hold 77 % / 95 % of their energy; this law gives 79 % / 93 %); an isotropic spectrum (0) is the
# worst case for the pruned evaluation (its bounds then come from a projection that holds little).
SPECTRUM_POWER = 1.5
# Noise scales, chosen so that global + DMLI at Market1501 size scores about Rank-1 90 and mAP 77
# (a trained ResNet-50's difficulty; README table) with SPECTRUM_POWER 1.5.
PART_NOISE = 0.5
GLOBAL_NOISE = 2.0
CAMERA_BIAS = 0.3


# ----------------------------------------------------------------------------- synthetic data
def make_features(num_query, num_gallery, num_ids, num_cams, local_dims, seed=0,
                  distractor_frac=0.17, junk_frac=0.02, global_dim=2048,
                  spectrum_power=SPECTRUM_POWER, part_noise=PART_NOISE,
                  global_noise=GLOBAL_NOISE):
    """Returns dict: global (N, 2048), local_<C> (N, 8, C) per C in local_dims, pids, camids
    (queries first).

    Each identity has P+2 part prototypes (each image sees P of them, shifted by 0-2 stripes, so
    alignment matters); a part = (prototype + camera bias + part_noise * noise), coordinate k
    scaled by k^(-spectrum_power / 2), then L2-normalised (as the model's parts). The global
    feature is a projection of the mean part plus an identity term and global_noise * noise,
    through a ReLU. Some gallery samples are distractors (pid 0) and junk (pid -1)."""
    rng = np.random.default_rng(seed)
    num_distractors = int(round(distractor_frac * num_gallery))
    num_junk = int(round(junk_frac * num_gallery))
    num_true = num_gallery - num_distractors - num_junk
    q_counts = 1 + rng.multinomial(num_query - num_ids, np.full(num_ids, 1.0 / num_ids))
    g_counts = 2 + rng.multinomial(num_true - 2 * num_ids, np.full(num_ids, 1.0 / num_ids))
    q_pids = np.repeat(np.arange(1, num_ids + 1), q_counts)
    g_pids = np.repeat(np.arange(1, num_ids + 1), g_counts)
    # distractors: their own (unlabelled) identities; junk: random appearance
    num_dis_ids = max(1, num_distractors // 4)
    dis_ids = num_ids + 1 + rng.integers(0, num_dis_ids, num_distractors)
    appearance = np.concatenate([q_pids, g_pids, dis_ids, np.full(num_junk, -1)])
    pids = np.concatenate([q_pids, g_pids, np.zeros(num_distractors, np.int64),
                           -np.ones(num_junk, np.int64)])
    n = pids.shape[0]
    camids = rng.integers(0, num_cams, n)

    total_ids = num_ids + 1 + num_dis_ids
    shift = rng.integers(0, 3, n)
    out = {"pids": pids, "camids": camids}
    glob = np.zeros((n, global_dim), dtype=np.float32)
    id_global = rng.standard_normal((total_ids, global_dim), dtype=np.float32)
    for c_idx, dim in enumerate(local_dims):
        prng = np.random.default_rng(seed + 101 + c_idx)
        scale = (np.arange(1, dim + 1, dtype=np.float32) ** (-spectrum_power / 2.0))
        proto = prng.standard_normal((total_ids, PARTS + 2, dim), dtype=np.float32)
        cam_bias = CAMERA_BIAS * prng.standard_normal((num_cams, 1, dim), dtype=np.float32)
        proj = prng.standard_normal((dim, global_dim), dtype=np.float32) / np.sqrt(dim)
        local = np.empty((n, PARTS, dim), dtype=np.float32)
        for s in range(0, n, 4096):
            e = min(s + 4096, n)
            app = appearance[s:e]
            ids = np.where(app < 0, 0, app)
            rows = np.arange(PARTS)[None, :] + shift[s:e, None]
            parts = proto[ids[:, None], rows]                       # (b, P, C)
            junk = app < 0
            if junk.any():
                parts[junk] = prng.standard_normal((int(junk.sum()), PARTS, dim), np.float32)
            parts += cam_bias[camids[s:e]]
            parts += part_noise * prng.standard_normal(parts.shape, dtype=np.float32)
            if c_idx == 0:
                glob[s:e] = parts.mean(axis=1) @ proj
            parts *= scale
            local[s:e] = parts / np.linalg.norm(parts, axis=2, keepdims=True)
        out[f"local_{dim}"] = local
    for s in range(0, n, 4096):
        e = min(s + 4096, n)
        ids = np.where(appearance[s:e] < 0, 0, appearance[s:e])
        glob[s:e] += 0.6 * id_global[ids]
        glob[s:e] += global_noise * rng.standard_normal((e - s, global_dim), dtype=np.float32)
        glob[s:e] = np.maximum(glob[s:e], 0)                   # post-ReLU, like pooled maps
    out["global"] = glob
    out["num_query"] = num_query
    return out


def load_extracted_features(query_file, gallery_file):
    """The features of a trained model as make_features returns them (queries first), from
    two files of tools/extract_features.py (the query and the gallery folder): each .npz holds
    global (N, D), local (N, P, C), pids and camids (parsed from Market1501-style names)."""
    parts = []
    for name, path in (("query", query_file), ("gallery", gallery_file)):
        if not os.path.isfile(path):
            raise SystemExit(f"benchmark_eval: --{name}-features {path} does not exist; write it "
                             f"with tools/extract_features.py --input <the {name} folder>")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("global", "local", "pids", "camids") if k not in z.files]
            if missing:
                raise SystemExit(f"benchmark_eval: {path} has no {', '.join(missing)}: it must "
                                 "come from tools/extract_features.py with an AlignedReID++ "
                                 "model (global and local features)")
            parts.append({k: z[k] for k in ("global", "local", "pids", "camids")})
    q, g = parts
    if q["local"].shape[1:] != g["local"].shape[1:] or q["global"].shape[1] != g["global"].shape[1]:
        raise SystemExit(f"benchmark_eval: the query and gallery features differ in shape "
                         f"({q['local'].shape[1:]} vs {g['local'].shape[1:]}): extract both with "
                         "the same model and config")
    dim = int(q["local"].shape[2])
    return {"global": np.concatenate([q["global"], g["global"]]).astype(np.float32),
            f"local_{dim}": np.concatenate([q["local"], g["local"]]).astype(np.float32),
            "pids": np.concatenate([q["pids"], g["pids"]]).astype(np.int64),
            "camids": np.concatenate([q["camids"], g["camids"]]).astype(np.int64),
            "num_query": int(q["pids"].shape[0])}


# ----------------------------------------------------------------------------- workers
def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return float("nan")


def _labels(data_dir):
    """(pids, camids, num_query) of the saved features."""
    pids = np.load(os.path.join(data_dir, "pids.npy"))
    camids = np.load(os.path.join(data_dir, "camids.npy"))
    with open(os.path.join(data_dir, "meta.json")) as f:
        return pids, camids, json.load(f)["num_query"]


def _feature_paths(data_dir, dim):
    return {"global": os.path.join(data_dir, "global.npy"),
            "local": os.path.join(data_dir, f"local_{dim}.npy")}


def _load(data_dir, dim):
    feats = {k: np.load(p) for k, p in _feature_paths(data_dir, dim).items()}
    return (feats,) + _labels(data_dir)


def _npy_batches(path, batch):
    """The rows of a .npy file in (B, ...) arrays read one batch at a time, as a test loader
    delivers a model's features: the whole array is never held besides the evaluator's copy."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        if fortran:
            raise ValueError(f"{path}: a Fortran-ordered array; save it C-ordered")
        per_row = int(np.prod(shape[1:], dtype=np.int64))
        for s in range(0, shape[0], batch):
            rows = min(batch, shape[0] - s)
            yield np.fromfile(f, dtype=dtype, count=rows * per_row).reshape((rows,) + shape[1:])


def run_seed(data_dir, dim):
    from tools.seed_eval_reference import (seed_eval_market1501, seed_global_distance,
                                           seed_local_distance, seed_normalize, seed_re_ranking)
    feats, pids, camids, nq = _load(data_dir, dim)
    keep = np.ones(pids.shape[0], dtype=bool)
    keep[nq:] = pids[nq:] != -1                 # the seed's data loader drops junk
    glob, local, pids, camids = feats["global"][keep], feats["local"][keep], pids[keep], camids[keep]
    q_pids, g_pids, q_cams, g_cams = pids[:nq], pids[nq:], camids[:nq], camids[nq:]
    base = _current_rss_mb()
    times = {}
    t0 = time.perf_counter()
    t = time.perf_counter()
    qf, gf = seed_normalize(glob[:nq]), seed_normalize(glob[nq:])
    distmat = seed_global_distance(qf, gf)
    times["global"] = time.perf_counter() - t
    t = time.perf_counter()
    local_qg = seed_local_distance(local[:nq], local[nq:])
    distmat = local_qg + distmat
    times["local_qg"] = time.perf_counter() - t
    t = time.perf_counter()
    cmc, mAP = seed_eval_market1501(distmat, q_pids, g_pids, q_cams, g_cams)
    times["rank"] = time.perf_counter() - t
    t = time.perf_counter()
    local_qq = seed_local_distance(local[:nq], local[:nq])
    times["local_qq"] = time.perf_counter() - t
    t = time.perf_counter()
    local_gg = seed_local_distance(local[nq:], local[nq:])
    times["local_gg"] = time.perf_counter() - t
    t = time.perf_counter()
    local_dist = np.concatenate([np.concatenate([local_qq, local_qg], axis=1),
                                 np.concatenate([local_qg.T, local_gg], axis=1)], axis=0)
    del local_qq, local_gg
    rk = seed_re_ranking(qf, gf, 20, 6, 0.3, local_distmat=local_dist)
    del local_dist
    times["rerank"] = time.perf_counter() - t
    t = time.perf_counter()
    rk_cmc, rk_map = seed_eval_market1501(rk, q_pids, g_pids, q_cams, g_cams)
    times["RK rank"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    metrics = {f"Rank-{r}": float(cmc[r - 1]) for r in RANKS}
    metrics["mAP"] = float(mAP)
    metrics.update({f"RK Rank-{r}": float(rk_cmc[r - 1]) for r in RANKS})
    metrics["RK mAP"] = float(rk_map)
    return {"times": times, "total": total, "metrics": metrics, "base_rss_mb": base}


def _warm_up(cfg, paths, pids, camids, nq, queries=200, gallery=1200):
    """One evaluation of the same pipeline on the first queries and gallery samples, so that
    compiling the numba kernels (on the first use after a change, or in a fresh clone) is not
    timed."""
    from fastreid_ms.evaluation import build_evaluator
    nq_small = min(nq, queries)
    rows = np.concatenate([np.arange(nq_small), nq + np.arange(min(gallery, pids.shape[0] - nq))])
    t = time.perf_counter()
    ev = build_evaluator(cfg, nq_small)
    ev.reset()
    ev.process({k: np.load(p, mmap_mode="r")[rows] for k, p in paths.items()}, pids[rows],
               camids[rows])
    ev.evaluate()
    print(f"[benchmark] warm-up on {nq_small} x {rows.size - nq_small} (compiling kernels, not "
          f"timed): {time.perf_counter() - t:.1f} s", flush=True)


def run_ours(data_dir, dim, candidates, prune=False, prune_dim=0):
    import projects.AlignedReIDpp.alignedreidpp  # noqa: F401  (keys and evaluator)
    from fastreid_ms.config import get_cfg
    from fastreid_ms.evaluation import build_evaluator
    pids, camids, nq = _labels(data_dir)
    paths = _feature_paths(data_dir, dim)
    cfg = get_cfg()
    cfg.TEST.EVALUATOR = "AlignedReIDEvaluator"
    cfg.TEST.DISTANCE = "global_local"
    cfg.TEST.RERANK.ENABLED = True
    cfg.TEST.RERANK.CANDIDATES = int(candidates)
    cfg.TEST.LOCAL.PRUNE = bool(prune)
    cfg.TEST.LOCAL.PRUNE_DIM = int(prune_dim)
    _warm_up(cfg, paths, pids, camids, nq)
    ev = build_evaluator(cfg, nq)
    ev.reset()
    batches = {k: _npy_batches(p, 128) for k, p in paths.items()}
    for s in range(0, pids.shape[0], 128):          # as a test loader would deliver them
        ev.process({k: next(b) for k, b in batches.items()}, pids[s:s + 128],
                   camids[s:s + 128])
    base = _current_rss_mb()
    t0 = time.perf_counter()
    res = ev.evaluate()
    total = time.perf_counter() - t0
    tm = ev.timings
    if ev.prune_stats is not None:
        times = {"global": tm.get("global", 0.0) + tm.get("features", 0.0),
                 "local_qg": tm.get("projection", 0.0) + tm.get("bounds_qg", 0.0)
                 + tm.get("exact_qg", 0.0),
                 "rank": tm.get("rank", 0.0),
                 "local_qq": tm.get("bounds_qq", 0.0),
                 "local_gg": tm.get("bounds_gg", 0.0) + tm.get("exact_neighbours", 0.0),
                 "rerank": tm.get("neighbours_qg", 0.0) + tm.get("rerank_core", 0.0),
                 "RK rank": tm.get("RK rank", 0.0)}
        return {"times": times, "total": total, "metrics": {k: v / 100.0 for k, v in res.items()},
                "base_rss_mb": base, "detail": dict(tm), "prune": dict(ev.prune_stats)}
    times = {"global": tm.get("global", 0.0),
             "local_qg": tm.get("local_qg", 0.0),
             "rank": tm.get("rank", 0.0),
             "local_qq": tm.get("local_qq", 0.0),
             "local_gg": tm.get("local_gg", 0.0),
             "rerank": tm.get("rerank", 0.0) - tm.get("local_qq", 0.0) - tm.get("local_gg", 0.0),
             "RK rank": tm.get("RK rank", 0.0)}
    metrics = {k: v / 100.0 for k, v in res.items()}
    return {"times": times, "total": total, "metrics": metrics, "base_rss_mb": base,
            "detail": dict(tm)}


def worker_main(args):
    if args.worker == "seed":
        out = run_seed(args.data, args.dim)
    else:
        out = run_ours(args.data, args.dim, args.candidates if args.worker == "candidate" else 0,
                       prune=args.worker == "pruned", prune_dim=args.prune_dim)
    out["peak_rss_mb"] = _peak_rss_mb()
    with open(args.result, "w") as f:
        json.dump(out, f)


# ----------------------------------------------------------------------------- driver
STAGES = ("global", "local_qg", "rank", "local_qq", "local_gg", "rerank", "RK rank")
METRICS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP")


def _spawn(kind, data_dir, dim, candidates, prune_dim=0):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = f.name
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--data", data_dir,
           "--dim", str(dim), "--candidates", str(candidates), "--result", result,
           "--prune-dim", str(prune_dim)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(f"[benchmark] {kind} (parts of {dim}) failed with exit code {proc.returncode}",
              flush=True)
        return None
    with open(result) as f:
        out = json.load(f)
    os.remove(result)
    out["wall"] = wall
    return out


def _max_diff(a, b, keys):
    return max(abs(a["metrics"][k] - b["metrics"][k]) for k in keys
               if k in a["metrics"] and k in b["metrics"])


def _cpu_line():
    """Model name, core count and the vector extensions in use (for the table's header)."""
    from fastreid_ms.utils.blas import cpu_flags
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="ignore") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = cpu_flags()
    isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    if os.environ.get("NUMBA_CPU_NAME") == "haswell":
        isa += ", run as AVX2 (--generic)"
    return f"{model}, {os.cpu_count()} cores, {isa}, {os.environ.get('OPENBLAS_CORETYPE', '')}"


def report(dim, runs, sizes):
    from tabulate import tabulate
    lines = [f"\n== local parts 8 x {dim}; {sizes['num_query']} queries x {sizes['num_gallery']} "
             f"gallery (times in seconds, memory in GB); CPU: {_cpu_line()} =="]
    rows = []
    seed = runs.get("seed")
    exact = runs.get("exact")
    for name, run in runs.items():
        if run is None:
            continue
        row = [name] + [run["times"].get(s, 0.0) for s in STAGES] + [run["total"],
                                                                      run["peak_rss_mb"] / 1024]
        row.append(f"{seed['total'] / run['total']:.1f}x" if seed and name != "seed" else "")
        rows.append(row)
    lines.append(tabulate(rows, headers=["pipeline"] + list(STAGES) + ["total", "peak RSS",
                                                                       "speed-up"],
                          floatfmt=".2f"))
    mrows = []
    keys = list(METRICS) + ["RK " + k for k in METRICS]
    for name, run in runs.items():
        if run is None:
            continue
        row = [name] + [f"{100 * run['metrics'].get(k, float('nan')):.3f}" for k in keys]
        row.append(f"{_max_diff(run, seed, keys):.2e}" if seed and name != "seed" else "")
        row.append(f"{100 * _max_diff(run, exact, ['Rank-1', 'mAP', 'RK Rank-1', 'RK mAP']):.3f}"
                   if exact and name in ("candidate", "pruned") else "")
        prune = run.get("prune")
        row.append(f"{100 * prune['fraction_computed']:.2f} % (rank {prune['projection_rank']}, "
                   f"energy {prune['projection_energy']:.3f})" if prune else "")
        mrows.append(row)
    lines.append(tabulate(mrows, headers=["pipeline"] + keys + ["max |diff| vs seed (fraction)",
                                                                 "R1/mAP diff vs exact (points)",
                                                                 "pairs with exact DMLI"],
                          floatfmt=".3f", disable_numparse=True))
    for name, run in runs.items():
        if run is not None and run.get("prune"):
            stats = run["prune"]
            lines.append(f"{name}: exact DMLI of {stats['pairs_computed']:,} of "
                         f"{stats['pairs_total']:,} pairs (query x gallery "
                         f"{stats['qg_exact']:,}, neighbour lists {stats['neighbour_exact']:,} "
                         f"(candidates asked for by the nearest-k search "
                         f"{stats.get('neighbour_asked_nearest', 0):,}, by the row-maximum "
                         f"search {stats.get('neighbour_asked_maximum', 0):,}), "
                         f"re-ranked metrics {stats['rk_extra_exact']:,}); float16 bounds of "
                         f"{stats.get('qg_refined', 0):,} query x gallery pairs; seconds by "
                         f"step (refine: those bounds, inside exact_qg): "
                         + ", ".join(f"{k} {v:.1f}" for k, v in run["detail"].items()))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the Market-1501 (or MSMT17) sizes")
    parser.add_argument("--msmt", action="store_true",
                        help="MSMT17 size (11,659 x 82,161): candidate mode, ours only")
    parser.add_argument("--skip-seed", action="store_true", help="do not run the seed pipeline")
    parser.add_argument("--local-dims", default="128,2048",
                        help="part feature sizes, comma-separated (the seed runs with the first)")
    parser.add_argument("--exact-all", action="store_true",
                        help="also run the exact mode for part sizes above 512 (slow)")
    parser.add_argument("--candidates", type=int, default=200, help="TEST.RERANK.CANDIDATES")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="", help="also write the tables to this file")
    parser.add_argument("--pipelines", default="seed,exact,pruned,candidate",
                        help="pipelines to run, comma-separated: seed (the seed's, first part "
                             "size only), exact (every pair, TEST.LOCAL.PRUNE False), pruned "
                             "(exact with pruning, the default), candidate (approximate)")
    parser.add_argument("--prune-dim", type=int, default=0, help="TEST.LOCAL.PRUNE_DIM")
    parser.add_argument("--generic", action="store_true",
                        help="every pipeline on AVX2 code only (numba for Haswell, OpenBLAS "
                             "Haswell kernels): an AVX2 machine's kernels on an AVX-512 one")
    parser.add_argument("--query-features", default="",
                        help="a trained model's query features (.npz of tools/extract_features.py"
                             "); with --gallery-features, benchmark those instead of generated "
                             "ones (their part size replaces --local-dims)")
    parser.add_argument("--gallery-features", default="", help="see --query-features")
    parser.add_argument("--worker", choices=["seed", "exact", "pruned", "candidate"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generic:                    # read by the workers' numba and OpenBLAS at start-up
        os.environ["NUMBA_CPU_NAME"] = "haswell"
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"
    if args.worker:
        worker_main(args)
        return None

    real = None
    if args.query_features or args.gallery_features:
        if not (args.query_features and args.gallery_features):
            raise SystemExit("benchmark_eval: give both --query-features and --gallery-features")
        real = load_extracted_features(args.query_features, args.gallery_features)
        dims = [int(real[k].shape[2]) for k in real if k.startswith("local_")]
        true_ids = real["pids"][real["pids"] > 0]
        sizes = {"num_query": real["num_query"],
                 "num_gallery": int(real["pids"].shape[0]) - real["num_query"],
                 "num_ids": int(np.unique(true_ids).size),
                 "num_cams": int(np.unique(real["camids"]).size), "features": "extracted"}
    else:
        base = MSMT if args.msmt else MARKET
        sizes = {k: max(1, int(round(v * args.scale))) for k, v in base.items()}
        sizes["num_cams"] = base["num_cams"]
        sizes["num_ids"] = max(10, min(sizes["num_ids"], sizes["num_query"]))
        dims = [int(d) for d in args.local_dims.split(",") if d]
        if args.msmt:
            dims = dims[:1]
    print(f"[benchmark] sizes {sizes}, part sizes {dims}, candidates {args.candidates}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as data_dir:
        t = time.perf_counter()
        data = real if real is not None else make_features(
            sizes["num_query"], sizes["num_gallery"], sizes["num_ids"], sizes["num_cams"], dims,
            seed=args.seed)
        np.save(os.path.join(data_dir, "global.npy"), data["global"])
        for d in dims:
            np.save(os.path.join(data_dir, f"local_{d}.npy"), data[f"local_{d}"])
        np.save(os.path.join(data_dir, "pids.npy"), data["pids"])
        np.save(os.path.join(data_dir, "camids.npy"), data["camids"])
        with open(os.path.join(data_dir, "meta.json"), "w") as f:
            json.dump({"num_query": data["num_query"]}, f)
        del data
        print(f"[benchmark] features {'loaded' if real is not None else 'generated'} in {time.perf_counter() - t:.1f} s", flush=True)
        wanted = [p for p in args.pipelines.split(",") if p]
        for i, dim in enumerate(dims):
            runs = {}
            if "seed" in wanted and not args.msmt and not args.skip_seed and i == 0:
                print(f"[benchmark] seed pipeline, parts of {dim} ...", flush=True)
                runs["seed"] = _spawn("seed", data_dir, dim, 0)
            if "exact" in wanted and not args.msmt and (dim <= 512 or args.exact_all):
                print(f"[benchmark] ours, exact, every pair, parts of {dim} ...", flush=True)
                runs["exact"] = _spawn("exact", data_dir, dim, 0)
            if "pruned" in wanted:
                print(f"[benchmark] ours, exact with pruning, parts of {dim} ...", flush=True)
                runs["pruned"] = _spawn("pruned", data_dir, dim, 0, args.prune_dim)
            if "candidate" in wanted:
                print(f"[benchmark] ours, candidate re-ranking (K={args.candidates}), parts of "
                      f"{dim} ...", flush=True)
                runs["candidate"] = _spawn("candidate", data_dir, dim, args.candidates)
            results.append({"dim": dim, "runs": runs, "text": report(dim, runs, sizes)})
    if args.output:
        from fastreid_ms.utils.file_io import atomic_write_text
        atomic_write_text(args.output, "\n".join(r["text"] for r in results) + "\n")
    return results


if __name__ == "__main__":
    main()
