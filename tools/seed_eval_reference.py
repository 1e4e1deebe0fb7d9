"""A faithful numpy re-implementation of the seed's evaluation pipeline, for benchmarks only.

The seed (MindSpore model zoo, research/cv/AlignedReID++: test.py, src/distance.py,
src/eval_metrics.py, src/re_ranking.py) evaluates like this, and so does this module, operation
for operation (the MindSpore operators it uses for the global distances are numpy here):

- global features L2-normalised (x / (||x|| + 1e-12)), distance ||q||^2 + ||g||^2 - 2 q.g;
- local (DMLI) distances in blocks of about 200 x 200 images (``np.array_split`` into
  len/200 + 1 parts): one euclidean part-distance matrix per block (clamped at 0, square root),
  squashed by (e^d - 1) / (e^d + 1), then the shortest path with a Python double loop over the
  P x P grid, each step on the whole block (``np.min(np.stack(...))``);
- CMC / mAP with a Python loop over queries and a per-element list comprehension for AP;
- re-ranking on the dense (q+g) x (q+g) matrix (global + local q-q / q-g / g-g), float16 V,
  Python loops over all samples.

It exists to measure the speed-up and to check that our metrics agree; use
``fastreid_ms.evaluation`` for real work.
"""
import numpy as np

__all__ = ["seed_normalize", "seed_global_distance", "seed_local_distance", "seed_eval_market1501",
           "seed_re_ranking"]


def seed_normalize(x):
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + np.float32(1e-12))


def seed_global_distance(qf, gf):
    """Squared euclidean of the (already normalised) features, float32."""
    m, n = qf.shape[0], gf.shape[0]
    qsq = np.broadcast_to(np.sum(np.power(qf, 2), axis=1, keepdims=True), (m, n))
    gsq = np.broadcast_to(np.sum(np.power(gf, 2), axis=1, keepdims=True), (n, m)).T
    return qsq + gsq + np.matmul(qf, gf.T) * (-2)


# ----------------------------------------------------------------------------- local distance
def _euclidean(a, b):
    sq_a = np.sum(np.square(a), axis=1)[..., np.newaxis]
    sq_b = np.sum(np.square(b), axis=1)[np.newaxis, ...]
    squared = -2 * np.matmul(a, b.T) + sq_a + sq_b
    squared[squared < 0] = 0
    return np.sqrt(squared)


def _shortest_path(cost):
    """cost (m, n, ...) -> (...): Python loop over the grid, each cell on the whole block."""
    m, n = cost.shape[:2]
    acc = np.zeros_like(cost)
    for i in range(m):
        for j in range(n):
            if i == 0 and j == 0:
                acc[i, j] = cost[i, j]
            elif i == 0:
                acc[i, j] = acc[i, j - 1] + cost[i, j]
            elif j == 0:
                acc[i, j] = acc[i - 1, j] + cost[i, j]
            else:
                acc[i, j] = np.min(np.stack([acc[i - 1, j], acc[i, j - 1]], axis=0),
                                   axis=0) + cost[i, j]
    return acc[-1, -1].copy()


def _diagonal_sum(cost):
    m = cost.shape[0]
    acc = np.zeros_like(cost[0])
    for i in range(m):
        acc[i] = cost[i][i]
    return np.sum(acc, axis=0).copy()


def _block_local_distance(x, y, aligned):
    big_m, m, d = x.shape
    big_n, n, _ = y.shape
    dist = _euclidean(x.reshape([big_m * m, d]), y.reshape([big_n * n, d]))
    dist = (np.exp(dist) - 1.) / (np.exp(dist) + 1.)
    dist = dist.reshape([big_m, m, big_n, n]).transpose([1, 3, 0, 2])
    return _shortest_path(dist) if aligned else _diagonal_sum(dist)


def seed_local_distance(x, y, aligned=True):
    """x (M, P, C), y (N, P, C) -> (M, N), in the seed's ~200 x 200 blocks."""
    x_splits = int(len(x) / 200) + 1
    y_splits = int(len(y) / 200) + 1
    rows = []
    for part_x in np.array_split(x, x_splits, axis=0):
        cols = [_block_local_distance(part_x, part_y, aligned)
                for part_y in np.array_split(y, y_splits, axis=0)]
        rows.append(np.concatenate(cols, axis=1))
    return np.concatenate(rows, axis=0)


# ----------------------------------------------------------------------------- metrics
def seed_eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """(cmc (max_rank,), mAP): per-query loop, per-element AP."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap = [], []
    num_valid = 0.
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw = matches[q_idx][np.invert(remove)]
        if not np.any(raw):
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_valid += 1.
        num_rel = raw.sum()
        tmp = raw.cumsum()
        tmp = [v / (i + 1.) for i, v in enumerate(tmp)]
        tmp = np.asarray(tmp) * raw
        all_ap.append(tmp.sum() / num_rel)
    if num_valid == 0:
        raise ValueError("all query identities do not appear in gallery")
    all_cmc = np.asarray(all_cmc).astype(np.float32).sum(0) / num_valid
    return all_cmc, float(np.mean(all_ap))


# ----------------------------------------------------------------------------- re-ranking
def seed_re_ranking(qf, gf, k1, k2, lambda_value, local_distmat=None, only_local=False):
    """The seed's re_ranking(probFea, galFea, ...) on normalised numpy features."""
    query_num = qf.shape[0]
    all_num = query_num + gf.shape[0]
    if only_local:
        original = local_distmat
    else:
        feat = np.concatenate([qf, gf])
        sq = np.broadcast_to(np.sum(np.power(feat, 2), 1, keepdims=True), (all_num, all_num))
        distmat = sq + sq.T
        distmat = distmat + np.dot(feat, feat.T) * (-2)
        original = distmat
        del feat, sq
        if local_distmat is not None:
            original = original + local_distmat
    gallery_num = original.shape[0]
    original = np.transpose(original / np.max(original, axis=0))
    V = np.zeros_like(original).astype(np.float16)
    initial_rank = np.argsort(original).astype(np.int32)
    half = int(np.around(k1 / 2))
    for i in range(all_num):
        forward = initial_rank[i, :k1 + 1]
        backward = initial_rank[forward, :k1 + 1]
        k_recip = forward[np.where(backward == i)[0]]
        expansion = k_recip
        for j in range(len(k_recip)):
            cand = k_recip[j]
            c_forward = initial_rank[cand, :half + 1]
            c_backward = initial_rank[c_forward, :half + 1]
            c_recip = c_forward[np.where(c_backward == cand)[0]]
            if len(np.intersect1d(c_recip, k_recip)) > 2 / 3 * len(c_recip):
                expansion = np.append(expansion, c_recip)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    original = original[:query_num, ]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float16)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(gallery_num)]
    jaccard = np.zeros_like(original, dtype=np.float16)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, gallery_num], dtype=np.float16)
        non_zero = np.where(V[i, :] != 0)[0]
        images = [inv_index[ind] for ind in non_zero]
        for j in range(len(non_zero)):
            temp_min[0, images[j]] = temp_min[0, images[j]] + np.minimum(V[i, non_zero[j]],
                                                                         V[images[j], non_zero[j]])
        jaccard[i] = 1 - temp_min / (2 - temp_min)
    final = jaccard * (1 - lambda_value) + original * lambda_value
    del original, V, jaccard
    return final[:query_num, query_num:]
