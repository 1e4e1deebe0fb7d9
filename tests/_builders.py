"""Test helpers: small dataset trees in the real folder layouts (tiny valid images), loading
the repository's scripts (tools/, ascend310_infer/) as modules, and slow, obviously correct
references of the evaluation (distances, rank metrics, k-reciprocal re-ranking)."""
import importlib.util
import os
import sys
from typing import Iterable, Sequence

import numpy as np
from PIL import Image


def write_image(path: str, height: int = 16, width: int = 8, value: int = 128) -> str:
    """A tiny valid image (JPEG or PNG by extension) filled with ``value`` plus a ramp."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ramp = (np.arange(height * width * 3).reshape(height, width, 3) % 7).astype(np.uint8)
    Image.fromarray(np.clip(ramp + value, 0, 255).astype(np.uint8)).save(path)
    return path


def write_split(folder: str, names: Iterable[str], **kwargs) -> None:
    """Create ``folder`` and an image for each file name in it."""
    os.makedirs(folder, exist_ok=True)
    for name in names:
        write_image(os.path.join(folder, name), **kwargs)


def write_three_splits(dataset_dir: str, train: Sequence[str], query: Sequence[str],
                       gallery: Sequence[str], **kwargs) -> str:
    """Market-style folders bounding_box_train / query / bounding_box_test."""
    write_split(os.path.join(dataset_dir, "bounding_box_train"), train, **kwargs)
    write_split(os.path.join(dataset_dir, "query"), query, **kwargs)
    write_split(os.path.join(dataset_dir, "bounding_box_test"), gallery, **kwargs)
    return dataset_dir


def market_name(pid: int, cam: int, n: int = 0) -> str:
    """0002_c1s1_000451_03.jpg style (pid -1 gives -1_c1s1_...)."""
    prefix = "-1" if pid == -1 else f"{pid:04d}"
    return f"{prefix}_c{cam}s1_{n:06d}_00.jpg"


def duke_name(pid: int, cam: int, n: int = 0) -> str:
    """0001_c2_f0046182.jpg style."""
    return f"{pid:04d}_c{cam}_f{n:07d}.jpg"


def cuhk03_name(pid: int, cam: int, n: int = 0) -> str:
    """0001_c1_1.png style."""
    return f"{pid:04d}_c{cam}_{n}.png"


def msmt17_rel_path(pid: int, cam: int, n: int = 0) -> str:
    """0000/0000_000_01_0303morning_0015_0.jpg style (camera 1-based, two digits)."""
    return f"{pid:04d}/{pid:04d}_{n:03d}_{cam:02d}_0303morning_{n:04d}_0.jpg"


def write_msmt17(root: str, version: str = "MSMT17_V1", train=(), val=(), query=(),
                 gallery=()) -> str:
    """An MSMT17 tree: entries are (pid, cam, n); writes images and list files."""
    train_dir, test_dir = {"MSMT17_V1": ("train", "test"),
                           "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}[version]
    base = os.path.join(root, version)
    for list_name, image_dir, entries in (("list_train.txt", train_dir, train),
                                          ("list_val.txt", train_dir, val),
                                          ("list_query.txt", test_dir, query),
                                          ("list_gallery.txt", test_dir, gallery)):
        lines = []
        for pid, cam, n in entries:
            rel = msmt17_rel_path(pid, cam, n)
            write_image(os.path.join(base, image_dir, rel))
            lines.append(f"{rel} {pid}\n")
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, list_name), "w", encoding="utf-8") as f:
            f.writelines(lines)
    return base


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(relative_path: str, module_name: str = None):
    """Import a script of the repository (e.g. "tools/compare.py") as a fresh module; its folder
    goes on sys.path first, as when the script runs, so its sibling imports work."""
    path = os.path.join(REPO_ROOT, relative_path)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = module_name or "script_" + relative_path.replace("/", "_").rsplit(".", 1)[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize_bn_stats(model, seed=0, variances=True):
    """Non-trivial BN running statistics (means, and variances unless ``variances`` is False),
    so that eval-mode BN is not the identity."""
    import mindspore as ms
    rng = np.random.RandomState(seed)
    for name, p in model.parameters_and_names():
        if name.endswith("moving_mean"):
            p.set_data(ms.Tensor(rng.randn(*p.shape).astype(np.float32) * 0.1))
        elif variances and name.endswith("moving_variance"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))


# ----------------------------------------------------------------------------- references
def reference_distance(x, y, metric="euclidean"):
    """(M, D) x (N, D) -> (M, N) float64 by broadcasting: the library's conventions written
    out (fastreid_ms/evaluation/distance.py): squared euclidean, or 1 - cos(x, y)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
        return 1.0 - (x[:, None, :] * y[None, :, :]).sum(-1)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def slow_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """One query at a time: stable sort, drop same pid+camera and junk, walk the list."""
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = sorted(range(distmat.shape[1]), key=lambda j: (distmat[i, j], j))
        kept = [j for j in order
                if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])]
        hits = [1 if g_pids[j] == q_pids[i] else 0 for j in kept]
        if sum(hits) == 0:
            continue
        first = hits.index(1) + 1
        cmcs.append([1.0 if first <= r else 0.0 for r in range(1, max_rank + 1)])
        precisions = []
        found = 0
        last = 0
        for pos, h in enumerate(hits, start=1):
            if h:
                found += 1
                precisions.append(found / pos)
                last = pos
        aps.append(sum(precisions) / found)
        inps.append(found / last)
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps))


def reference_re_ranking(q_g, q_q, g_g, k1, k2, lambda_value):
    """Zhong et al. (CVPR 2017) as in the published code, loops and all (float64, no float16)."""
    original = np.concatenate([np.concatenate([q_q, q_g], axis=1),
                               np.concatenate([q_g.T, g_g], axis=1)], axis=0).astype(np.float64)
    query_num = q_g.shape[0]
    all_num = original.shape[0]
    original = np.transpose(original / np.max(original, axis=0))
    V = np.zeros_like(original)
    initial_rank = np.argsort(original, kind="stable").astype(np.int32)
    for i in range(all_num):
        forward = initial_rank[i, :k1 + 1]
        backward = initial_rank[forward, :k1 + 1]
        fi = np.where(backward == i)[0]
        k_reciprocal = forward[fi]
        expansion = k_reciprocal
        for j in range(len(k_reciprocal)):
            candidate = k_reciprocal[j]
            c_forward = initial_rank[candidate, :int(np.around(k1 / 2)) + 1]
            c_backward = initial_rank[c_forward, :int(np.around(k1 / 2)) + 1]
            fi_c = np.where(c_backward == candidate)[0]
            c_reciprocal = c_forward[fi_c]
            if len(np.intersect1d(c_reciprocal, k_reciprocal)) > 2 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    original = original[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard = np.zeros_like(original)
    for i in range(query_num):
        temp_min = np.zeros(all_num)
        non_zero = np.where(V[i, :] != 0)[0]
        for k in non_zero:
            images = inv_index[k]
            temp_min[images] += np.minimum(V[i, k], V[images, k])
        jaccard[i] = 1 - temp_min / (2 - temp_min)
    final = jaccard * (1 - lambda_value) + original * lambda_value
    return final[:query_num, query_num:]
