"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), as the seed and the AlignedReID++ code use it.

Semantics (those of the published code, computed with sparse structures instead of dense
(q+g) x (q+g) float16 matrices and Python loops over all samples):

1. ``original``: the (q+g) x (q+g) distance matrix [[q_q, q_g], [g_q, g_g]]; it is divided by
   the maximum of each column and transposed, so row i is column i over its own maximum.
2. ``initial_rank``: each row's samples by increasing distance.
3. R(i), the k-reciprocal set: the k1+1 nearest of i that also have i among their k1+1 nearest;
   for every c in R(i), its own reciprocal set over round(k1/2)+1 nearest is added when more
   than 2/3 of it lies in R(i).
4. V[i, j] = exp(-d(i, j)) / sum over the expanded set (Gaussian weights, rows sum to 1).
5. Local query expansion: V[i] = mean of V over the k2 nearest of i (k2 == 1: none).
6. Jaccard distance 1 - s / (2 - s) with s = sum_k min(V[i, k], V[j, k]).
7. final = jaccard * (1 - lambda) + original * lambda, query rows and gallery columns.

Values are computed in float32/float64 (the published code stores V in float16; differences are
of that order). Ties in the ranking are broken by sample index.

``re_ranking`` takes dense matrices. ``re_ranking_neighbours`` is the core used by the
evaluators: it only needs each sample's nearest neighbours, row maxima and a way to get the
distance of given pairs, so the (q+g)^2 matrix never has to exist: the evaluators stream its
tiles into ``neighbours.NeighbourLists``. The Jaccard distance and the final blend run in a
compiled kernel (numba) over query blocks in threads; FASTREID_RERANK_KERNEL=numpy selects the
sparse-matrix NumPy path.
"""
import numpy as np
import scipy.sparse as sp

from fastreid_ms.utils.threads import run_tasks

from .neighbours import numba, rerank_kernel, smallest_per_row

__all__ = ["re_ranking", "re_ranking_dense", "re_ranking_neighbours", "scan_neighbours",
           "PairLookup"]

_BLOCK_ELEMENTS = 8_000_000


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """Re-ranked (num_query, num_gallery) float32 distances from the three distance matrices
    (q_g (Q, G), q_q (Q, Q), g_g (G, G)) of the original distance (e.g. squared euclidean)."""
    q_g = np.asarray(q_g_dist, dtype=np.float32)
    q_q = np.asarray(q_q_dist, dtype=np.float32)
    g_g = np.asarray(g_g_dist, dtype=np.float32)
    if q_g.ndim != 2:
        raise ValueError(f"q_g_dist must be 2-D (num_query, num_gallery), got {q_g.shape}")
    nq, ng = q_g.shape
    if q_q.shape != (nq, nq):
        raise ValueError(f"q_q_dist has shape {q_q.shape}, expected ({nq}, {nq}) to match "
                         f"q_g_dist {q_g.shape}")
    if g_g.shape != (ng, ng):
        raise ValueError(f"g_g_dist has shape {g_g.shape}, expected ({ng}, {ng}) to match "
                         f"q_g_dist {q_g.shape}")
    # Row i of the transposed original matrix is its column i.
    rows = np.block([[q_q.T, q_g], [q_g.T, g_g.T]])
    return re_ranking_dense(rows, nq, k1=k1, k2=k2, lambda_value=lambda_value)


def _check_params(k1, k2, lambda_value, n):
    if int(k1) < 1 or int(k2) < 1:
        raise ValueError(f"Re-ranking needs k1 >= 1 and k2 >= 1 (TEST.RERANK.K1/K2), got "
                         f"k1={k1}, k2={k2}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"TEST.RERANK.LAMBDA must be in [0, 1], got {lambda_value}")
    if n < 2:
        raise ValueError(f"Re-ranking needs at least two samples, got {n}")


def re_ranking_dense(rows, num_query, k1=20, k2=6, lambda_value=0.3):
    """Re-ranking from the dense (n, n) matrix whose row i is column i of the original
    distance (the matrix itself when it is symmetric); the first ``num_query`` rows are the
    queries. Returns (num_query, n - num_query) float32. ``rows`` is not modified."""
    n = rows.shape[0]
    _check_params(k1, k2, lambda_value, n)
    if rows.shape != (n, n):
        raise ValueError(f"Expected a square matrix, got {rows.shape}")
    row_max = rows.max(axis=1).astype(np.float32)
    num_keep = min(n, max(int(k1) + 1, int(k2)))
    top, _ = scan_neighbours(lambda s, e: rows[s:e], n, num_keep, row_max=row_max)

    def pair_dist(i, j):
        return rows[i, j]

    def query_dist(s, e):
        return rows[s:e, num_query:]

    return re_ranking_neighbours(top, row_max, num_query, pair_dist, query_dist, k1=k1, k2=k2,
                                 lambda_value=lambda_value)


def scan_neighbours(row_fn, n, k, row_max=None, block_rows=None, keep_dist=False):
    """Nearest ``k`` samples of every row of an (n, n) distance given block by block.

    ``row_fn(start, stop)`` -> (stop-start, n) raw distances. Rows are ranked after division by
    their maximum (as the published code ranks the normalised matrix). Returns ``(top, extra)``:
    ``top`` (n, k) int64 sorted nearest first; ``extra`` a dict with "row_max" (n,) float32 and,
    when ``keep_dist``, "dist" (n, k) float32 raw distances of ``top``.
    """
    k = min(int(k), n)
    if block_rows is None:
        block_rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    top = np.empty((n, k), dtype=np.int64)
    maxima = np.empty(n, dtype=np.float32) if row_max is None else row_max
    dist = np.empty((n, k), dtype=np.float32) if keep_dist else None
    for s in range(0, n, block_rows):
        e = min(s + block_rows, n)
        raw = np.asarray(row_fn(s, e), dtype=np.float32)
        if row_max is None:
            maxima[s:e] = raw.max(axis=1)
        normalised = raw / maxima[s:e, None]
        part = smallest_per_row(normalised, k)
        order = np.lexsort((part, np.take_along_axis(normalised, part, axis=1)), axis=1)
        top[s:e] = np.take_along_axis(part, order, axis=1)
        if keep_dist:
            dist[s:e] = np.take_along_axis(raw, top[s:e], axis=1)
    extra = {"row_max": maxima}
    if keep_dist:
        extra["dist"] = dist
    return top, extra


class PairLookup:
    """Distances of (i, j) pairs read from each row's stored neighbour list when present (or,
    for a ``symmetric`` distance, from j's list), computed by ``compute(i, j)`` otherwise."""

    def __init__(self, top, dist, compute, symmetric=True):
        self.symmetric = symmetric
        n, k = top.shape
        self._n = n
        keys = (np.arange(n, dtype=np.int64)[:, None] * n + top).ravel()
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._vals = dist.ravel()[order]
        self._compute = compute

    def _find(self, keys):
        pos = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
        return pos, self._keys[pos] == keys

    def __call__(self, i, j):
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        out = np.empty(i.shape, dtype=np.float32)
        pos, found = self._find(i * self._n + j)
        out[found] = self._vals[pos[found]]
        missing = np.nonzero(~found)[0]
        if missing.size and self.symmetric:            # d(i, j) = d(j, i): j's list may hold i
            pos_r, found_r = self._find(j[missing] * self._n + i[missing])
            out[missing[found_r]] = self._vals[pos_r[found_r]]
            missing = missing[~found_r]
        if missing.size:
            out[missing] = self._compute(i[missing], j[missing])
        return out


def _reciprocal(top, k, block_rows):
    """(n, k) bool: top[i, m] has i among its own k nearest."""
    n = top.shape[0]
    out = np.empty((n, k), dtype=bool)
    head = top[:, :k]
    for s in range(0, n, block_rows):
        e = min(s + block_rows, n)
        back = head[head[s:e]]                                   # (b, k, k)
        out[s:e] = (back == np.arange(s, e)[:, None, None]).any(axis=2)
    return out


def _expanded_sets(top, k1, block_rows):
    """Sorted unique (row, col) pairs of every sample's expanded k-reciprocal set."""
    n = top.shape[0]
    kf = min(k1 + 1, top.shape[1])
    kh = min(int(np.around(k1 / 2)) + 1, top.shape[1])
    fwd = top[:, :kf]
    recip = _reciprocal(top, kf, block_rows)
    half = _reciprocal(top, kh, block_rows)
    half_top = top[:, :kh]
    rows_out, cols_out = [], []
    sub = max(1, block_rows // (kf * kh))
    for s in range(0, n, sub):
        e = min(s + sub, n)
        f, r = fwd[s:e], recip[s:e]                              # (b, kf)
        cand_sets = half_top[f]                                  # (b, kf, kh)
        cand_mask = half[f]                                      # (b, kf, kh)
        in_r = ((cand_sets[..., None] == f[:, None, None, :]) & r[:, None, None, :]).any(axis=3)
        count = (in_r & cand_mask).sum(axis=2)
        size = cand_mask.sum(axis=2)
        take = r & (count > 2.0 / 3.0 * size)                    # (b, kf)
        row_ids = np.arange(s, e)[:, None]
        rows_out.append(np.broadcast_to(row_ids, f.shape)[r])
        cols_out.append(f[r])
        sel = take[..., None] & cand_mask
        rows_out.append(np.broadcast_to(row_ids[:, :, None], cand_sets.shape)[sel])
        cols_out.append(cand_sets[sel])
    rows = np.concatenate(rows_out)
    cols = np.concatenate(cols_out)
    keys = np.unique(rows.astype(np.int64) * n + cols)
    return keys // n, keys % n


def _gaussian_weights(rows, cols, row_max, pair_dist, n):
    """CSR (n, n) float64: exp(-d / row_max) normalised to sum 1 per row."""
    d = np.asarray(pair_dist(rows, cols), dtype=np.float32) / row_max[rows]
    w = np.exp(-d).astype(np.float64)
    sums = np.bincount(rows, weights=w, minlength=n)
    w /= sums[rows]
    return sp.csr_matrix((w, (rows, cols)), shape=(n, n))


def _jaccard_block(vq, vg_csc, num_gallery):
    """(b, G) float64 sum_k min(vq[i, k], vg[j, k]) for the query block ``vq`` (CSR)."""
    b = vq.shape[0]
    q_rows = np.repeat(np.arange(b), np.diff(vq.indptr))
    ks = vq.indices
    starts = vg_csc.indptr[ks]
    counts = vg_csc.indptr[ks + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros((b, num_gallery))
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total)
    g_idx = vg_csc.indices[offsets]
    mins = np.minimum(np.repeat(vq.data, counts), vg_csc.data[offsets])
    flat = np.repeat(q_rows, counts).astype(np.int64) * num_gallery + g_idx
    return np.bincount(flat, weights=mins, minlength=b * num_gallery).reshape(b, num_gallery)


def _blend_rows(vq_ptr, vq_idx, vq_val, vg_ptr, vg_idx, vg_val, original, row_max, lam, out):
    """Jaccard distance of each query row of V (CSR) to every gallery row (V's gallery part as
    CSC: for each column k, the gallery rows with V[g, k] != 0), blended with each of c original
    distances (c, b, G): out[c] = float32(jaccard * (1 - lam)) + original[c] / row_max * lam."""
    num_orig, b, num_gallery = out.shape
    inter = np.zeros(num_gallery, dtype=np.float64)
    lam32 = np.float32(lam)
    for r in range(b):
        inter[:] = 0.0
        for p in range(vq_ptr[r], vq_ptr[r + 1]):
            k = vq_idx[p]
            w = vq_val[p]
            for z in range(vg_ptr[k], vg_ptr[k + 1]):
                g = vg_idx[z]
                inter[g] += min(w, vg_val[z])
        for g in range(num_gallery):
            jac = np.float32((1.0 - inter[g] / (2.0 - inter[g])) * (1.0 - lam))
            for c in range(num_orig):
                out[c, r, g] = jac + original[c, r, g] / row_max[r] * lam32


_blend_jit = numba.njit(nogil=True, cache=True)(_blend_rows) if numba is not None else None


def re_ranking_neighbours(top, row_max, num_query, pair_dist, query_dist, k1=20, k2=6,
                          lambda_value=0.3, block_rows=None, kernel=None, out=None):
    """Re-ranked (num_query, num_gallery) float32 distances from neighbour lists.

    top: (n, K) nearest samples of each of the n = num_query + num_gallery samples (queries
        first), nearest first, K >= max(k1 + 1, k2) (or n);
    row_max: (n,) maximum raw distance of each row (the normaliser of the published code);
    pair_dist(i, j): raw distances of the pairs (i[t], j[t]) (row i of the transposed matrix);
    query_dist(start, stop): (stop-start, num_gallery) raw distances of query rows; or a list
        of such callables, each blended with the same Jaccard distances (for instance lower and
        upper bounds of the distance): then a list of outputs, one per callable;
    kernel: "numba" (compiled Jaccard + blend, query blocks in threads), "numpy" or None
    (rerank_kernel(): FASTREID_RERANK_KERNEL, else numba where it imports);
    out: None, or one (num_query, num_gallery) float32 C-contiguous array per output to write
        it into (returned); it may be an array that query_dist reads: each block of query rows
        is read before it is written.
    """
    n = top.shape[0]
    _check_params(k1, k2, lambda_value, n)
    k1, k2 = int(k1), int(k2)
    need = min(n, max(k1 + 1, k2))
    if top.shape[1] < need:
        raise ValueError(f"Neighbour lists have {top.shape[1]} entries; re-ranking with k1={k1}, "
                         f"k2={k2} needs {need} (raise TEST.RERANK.CANDIDATES)")
    num_gallery = n - num_query
    row_max = np.asarray(row_max, dtype=np.float32)
    if block_rows is None:
        block_rows = max(1, _BLOCK_ELEMENTS // (need * need))

    rows, cols = _expanded_sets(top, k1, block_rows)
    v = _gaussian_weights(rows, cols, row_max, pair_dist, n)
    if k2 != 1:
        qe_rows = np.repeat(np.arange(n), k2)
        qe = sp.csr_matrix((np.full(n * k2, 1.0), (qe_rows, top[:, :k2].ravel())), shape=(n, n))
        v = (qe @ v) / k2
        v = sp.csr_matrix(v)
    v.sort_indices()
    vq = v[:num_query]
    vg_csc = sp.csc_matrix(v[num_query:])
    vg_csc.sort_indices()

    lam = np.float32(lambda_value)
    several = isinstance(query_dist, (list, tuple))
    dists = list(query_dist) if several else [query_dist]
    if out is None:
        outputs = list(np.empty((len(dists), num_query, num_gallery), dtype=np.float32))
    else:
        outputs = list(out)
        if len(outputs) != len(dists) or any(
                o.shape != (num_query, num_gallery) or o.dtype != np.float32
                or not o.flags.c_contiguous for o in outputs):
            raise ValueError(f"re_ranking_neighbours: out must hold {len(dists)} C-contiguous "
                             f"float32 arrays of shape {(num_query, num_gallery)}")
    qb = max(1, _BLOCK_ELEMENTS // max(num_gallery * len(dists), 1))
    compiled = rerank_kernel(kernel) == "numba"

    def work(s):
        e = min(s + qb, num_query)
        original = np.stack([np.asarray(fn(s, e), dtype=np.float32) for fn in dists])
        if compiled:
            vb = vq[s:e]
            blended = np.empty_like(original)
            _blend_jit(vb.indptr, vb.indices, vb.data, vg_csc.indptr, vg_csc.indices,
                       vg_csc.data, original, row_max[s:e], float(lambda_value), blended)
        else:
            inter = _jaccard_block(vq[s:e], vg_csc, num_gallery)
            jaccard = (1.0 - inter / (2.0 - inter)) * (1.0 - lambda_value)
            blended = (jaccard.astype(np.float32)[None]
                       + original / row_max[None, s:e, None] * lam)
        for target, block in zip(outputs, blended):
            target[s:e] = block

    # The query_dist callback may not be thread-safe in general; ours are array views.
    run_tasks([(s,) for s in range(0, num_query, qb)], work, None if compiled else 1)
    return outputs if several else outputs[0]
