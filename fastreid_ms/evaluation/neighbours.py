"""Running nearest-neighbour lists of a symmetric distance matrix streamed tile by tile.

Re-ranking needs, for each of the n = q + g samples, its k nearest samples (by increasing
distance, ties by index: the order of a stable sort), each row's maximum (the normaliser of the
published code) and, in candidate mode, a few of the farthest samples. ``NeighbourLists`` keeps
them while tiles of the (n, n) matrix arrive in any order from any thread, so the matrix itself
never exists: memory is O(n k) whatever the gallery size.

The updates run in a compiled kernel (numba, released GIL) where numba imports, else in NumPy
(``FASTREID_RERANK_KERNEL=numpy`` forces that path); both give the same lists.
"""
import os
import threading

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - the numpy path remains
    numba = None

__all__ = ["NeighbourLists", "rerank_kernel", "smallest_per_row"]


def rerank_kernel(kernel=None):
    """"numba" or "numpy": ``kernel`` if given, else FASTREID_RERANK_KERNEL, else "numba"
    where numba imports."""
    fallback = "numba" if numba is not None else "numpy"
    kernel = (kernel or os.environ.get("FASTREID_RERANK_KERNEL", "") or fallback).lower()
    if kernel not in ("numba", "numpy"):
        raise ValueError(f"Re-ranking kernel must be 'numba' or 'numpy' "
                         f"(FASTREID_RERANK_KERNEL), got {kernel!r}")
    if kernel == "numba" and numba is None:
        raise ValueError("Re-ranking kernel 'numba' needs the numba package: pip install numba")
    return kernel


# ----------------------------------------------------------------------------- compiled kernels
def _insert(idx, val, i, j, v):
    """Row i of (idx, val) is a max-heap on (val, idx) (root: the worst kept pair): replace the
    root by (j, v) when that pair ranks before it, and restore the heap."""
    k = idx.shape[1]
    if not (v < val[i, 0] or (v == val[i, 0] and j < idx[i, 0])):
        return
    p = 0
    while True:
        child = 2 * p + 1
        if child >= k:
            break
        other = child + 1
        if other < k and (val[i, other] > val[i, child]
                          or (val[i, other] == val[i, child] and idx[i, other] > idx[i, child])):
            child = other
        if val[i, child] > v or (val[i, child] == v and idx[i, child] > j):
            val[i, p] = val[i, child]
            idx[i, p] = idx[i, child]
            p = child
        else:
            break
    val[i, p] = v
    idx[i, p] = j


def _add_tile(tile, row_start, col_start, symmetric, idx, val, row_max, far_idx, far_val):
    """Entries d(i, j) of ``tile`` (b, c) update the list of their row i; with ``symmetric``
    only pairs j >= i count (the diagonal once) and those with j > i also update the list of
    their column j, read row by row (no transposed copy)."""
    b, c = tile.shape
    num_far = far_idx.shape[1]
    for r in range(b):                                   # the rows' lists
        i = row_start + r
        lo = min(max(0, i - col_start), c) if symmetric else 0
        worst = val[i, 0]
        worst_far = far_val[i, 0] if num_far > 0 else np.float32(0.0)
        top = row_max[i]
        for q in range(lo, c):
            v = tile[r, q]
            if v <= worst:
                _insert(idx, val, i, col_start + q, v)
                worst = val[i, 0]
            if v > top:
                top = v
            if num_far > 0 and -v <= worst_far:
                _insert(far_idx, far_val, i, col_start + q, -v)
                worst_far = far_val[i, 0]
        row_max[i] = top
    if not symmetric:
        return
    worst_col = np.empty(c, dtype=np.float32)            # the columns' lists
    worst_far_col = np.zeros(c, dtype=np.float32)
    top_col = np.empty(c, dtype=np.float32)
    for q in range(c):
        j = col_start + q
        worst_col[q] = val[j, 0]
        if num_far > 0:
            worst_far_col[q] = far_val[j, 0]
        top_col[q] = row_max[j]
    for r in range(b):
        i = row_start + r
        for q in range(min(max(0, i + 1 - col_start), c), c):
            v = tile[r, q]
            if v <= worst_col[q]:
                _insert(idx, val, col_start + q, i, v)
                worst_col[q] = val[col_start + q, 0]
            if v > top_col[q]:
                top_col[q] = v
            if num_far > 0 and -v <= worst_far_col[q]:
                _insert(far_idx, far_val, col_start + q, i, -v)
                worst_far_col[q] = far_val[col_start + q, 0]
    for q in range(c):
        row_max[col_start + q] = top_col[q]


def _add_pairs(rows, cols, dist, symmetric, idx, val, row_max, far_idx, far_val):
    use_far = far_idx.shape[1] > 0
    for t in range(rows.shape[0]):
        i, j, v = rows[t], cols[t], dist[t]
        _insert(idx, val, i, j, v)
        if v > row_max[i]:
            row_max[i] = v
        if use_far:
            _insert(far_idx, far_val, i, j, -v)
        if symmetric and j != i:
            _insert(idx, val, j, i, v)
            if v > row_max[j]:
                row_max[j] = v
            if use_far:
                _insert(far_idx, far_val, j, i, -v)


if numba is not None:
    _insert = numba.njit(inline="always")(_insert)
    _add_tile_jit = numba.njit(nogil=True, cache=True)(_add_tile)
    _add_pairs_jit = numba.njit(nogil=True, cache=True)(_add_pairs)
else:  # pragma: no cover
    _add_tile_jit = _add_pairs_jit = None


# ----------------------------------------------------------------------------- numpy path
def _merge(idx, val, rows, cand_idx, cand_val):
    """Merge candidates (r, m) into the lists of ``rows`` (r,), keeping (val, idx) order."""
    k = idx.shape[1]
    all_idx = np.concatenate([idx[rows], cand_idx], axis=1)
    all_val = np.concatenate([val[rows], cand_val], axis=1)
    order = np.lexsort((all_idx, all_val), axis=1)[:, :k]
    idx[rows] = np.take_along_axis(all_idx, order, axis=1)
    val[rows] = np.take_along_axis(all_val, order, axis=1)


def smallest_per_row(values, m):
    """(b, m) column indices of the m smallest of each row of ``values`` (b, c), ties by index
    (the m first of a stable sort), in no particular order."""
    c = values.shape[1]
    if m >= c:
        return np.argsort(values, axis=1, kind="stable")
    part = np.argpartition(values, m - 1, axis=1)[:, :m]
    # argpartition may keep an equal value of higher index: redo those rows stably.
    chosen = np.take_along_axis(values, part, axis=1)
    kth = chosen.max(axis=1)
    tied = np.nonzero((values == kth[:, None]).sum(axis=1)
                      > (chosen == kth[:, None]).sum(axis=1))[0]
    if tied.size:
        part[tied] = np.argsort(values[tied], axis=1, kind="stable")[:, :m]
    return part


def _numpy_rows(lists, tile, row_start, col_start):
    """Every entry of ``tile`` updates the list of its row."""
    b, c = tile.shape
    rows = np.arange(row_start, row_start + b)
    finite = np.where(np.isnan(tile), np.inf, tile)
    # Entries that never enter a nearest list (NaN, +inf: as in the compiled kernel) carry the
    # index n and leave as -1.
    cols = np.where(np.isnan(tile) | (tile == np.inf), lists.n,
                    np.arange(col_start, col_start + c)[None, :])
    part = smallest_per_row(finite, min(lists.k, c))
    _merge(lists.idx, lists.val, rows, np.take_along_axis(cols, part, axis=1),
           np.take_along_axis(finite, part, axis=1))
    lists.idx[rows] = np.where(lists.idx[rows] == lists.n, -1, lists.idx[rows])
    np.maximum(lists.row_max[rows], np.where(np.isnan(tile), -np.inf, tile).max(axis=1),
               out=lists.row_max[row_start:row_start + b])
    if lists.num_far:
        neg = np.where(np.isnan(tile), np.inf, -tile)
        part = smallest_per_row(neg, min(lists.num_far, c))
        _merge(lists.far_idx, lists.far_val, rows, np.take_along_axis(cols, part, axis=1),
               np.take_along_axis(neg, part, axis=1))
        lists.far_idx[rows] = np.where(lists.far_idx[rows] == lists.n, -1, lists.far_idx[rows])


def _numpy_tile(lists, tile, row_start, col_start, symmetric):
    b, c = tile.shape
    if symmetric:
        below = (np.arange(col_start, col_start + c)[None, :]
                 < np.arange(row_start, row_start + b)[:, None])
        if below.any():
            rows_tile = np.where(below, np.nan, tile)
            diag = (np.arange(col_start, col_start + c)[None, :]
                    == np.arange(row_start, row_start + b)[:, None])
            cols_tile = np.where(below | diag, np.nan, tile)
        else:
            rows_tile = cols_tile = tile
        _numpy_rows(lists, rows_tile, row_start, col_start)
        _numpy_rows(lists, np.ascontiguousarray(cols_tile.T), col_start, row_start)
    else:
        _numpy_rows(lists, tile, row_start, col_start)


# ----------------------------------------------------------------------------- public class
class NeighbourLists:
    """Nearest ``k`` (and farthest ``num_far``) samples of each of ``n`` samples and each row's
    maximum, from tiles of an (n, n) distance matrix given in any order (thread-safe).

    Lists are sorted by (distance, index); a pair given twice must carry the same distance
    (give each pair once: ``add_tile`` in symmetric mode skips entries below the diagonal).
    NaN distances are ignored. ``result()`` returns a dict: "top" (n, k) int64 (-1 where fewer
    than k pairs were seen), "dist" (n, k) float32, "row_max" (n,) float32 and, with
    ``num_far``, "far" (n, num_far) int64 / "far_dist" (n, num_far) float32 (farthest first).
    """

    def __init__(self, n, k, num_far=0, kernel=None):
        self.n = int(n)
        self.k = max(1, min(int(k), self.n))
        self.num_far = max(0, min(int(num_far), self.n))
        self.kernel = rerank_kernel(kernel)
        self.idx = np.full((self.n, self.k), -1, dtype=np.int64)
        self.val = np.full((self.n, self.k), np.inf, dtype=np.float32)
        self.row_max = np.full(self.n, -np.inf, dtype=np.float32)
        self.far_idx = np.full((self.n, self.num_far), -1, dtype=np.int64)
        self.far_val = np.full((self.n, self.num_far), np.inf, dtype=np.float32)
        self._lock = threading.Lock()

    def _check(self, tile, row_start, col_start):
        tile = np.ascontiguousarray(tile, dtype=np.float32)
        if tile.ndim != 2:
            raise ValueError(f"A tile must be 2-D, got shape {tile.shape}")
        b, c = tile.shape
        if row_start < 0 or col_start < 0 or row_start + b > self.n or col_start + c > self.n:
            raise ValueError(f"Tile {tile.shape} at ({row_start}, {col_start}) lies outside the "
                             f"({self.n}, {self.n}) matrix")
        return tile

    def add_tile(self, tile, row_start, col_start, symmetric=True):
        """``tile`` (b, c) = d(row_start + r, col_start + c). ``symmetric``: the distance is
        symmetric and each pair i < j updates both samples (entries with column < row are
        skipped: their mirror lives in another tile; the diagonal counts once); otherwise only
        the rows' lists are updated."""
        tile = self._check(tile, row_start, col_start)
        with self._lock:
            if self.kernel == "numpy":
                _numpy_tile(self, tile, int(row_start), int(col_start), bool(symmetric))
            else:
                _add_tile_jit(tile, int(row_start), int(col_start), bool(symmetric), self.idx,
                              self.val, self.row_max, self.far_idx, self.far_val)

    def add_pairs(self, rows, cols, dist, symmetric=True):
        """Pairs (rows[t], cols[t]) at distance dist[t]; ``symmetric``: update both samples."""
        rows = np.ascontiguousarray(rows, dtype=np.int64).ravel()
        cols = np.ascontiguousarray(cols, dtype=np.int64).ravel()
        dist = np.ascontiguousarray(dist, dtype=np.float32).ravel()
        if not rows.shape == cols.shape == dist.shape:
            raise ValueError(f"rows, cols and dist differ in length: {rows.shape}, "
                             f"{cols.shape}, {dist.shape}")
        if rows.size and (min(rows.min(), cols.min()) < 0
                          or max(rows.max(), cols.max()) >= self.n):
            raise ValueError(f"Pair indices must lie in [0, {self.n})")
        with self._lock:
            if self.kernel == "numba":
                _add_pairs_jit(rows, cols, dist, bool(symmetric), self.idx, self.val,
                               self.row_max, self.far_idx, self.far_val)
                return
            order = np.argsort(rows, kind="stable")
            self._numpy_pairs(rows[order], cols[order], dist[order])
            if symmetric:
                keep = rows != cols
                order = np.argsort(cols[keep], kind="stable")
                self._numpy_pairs(cols[keep][order], rows[keep][order], dist[keep][order])

    def _numpy_pairs(self, rows, cols, dist):
        """Pairs grouped by row (rows sorted) -> padded (r, m) candidates merged at once."""
        if rows.size == 0:
            return
        uniq, starts, counts = np.unique(rows, return_index=True, return_counts=True)
        width = int(counts.max())
        slot = np.arange(rows.size) - np.repeat(starts, counts)
        group = np.repeat(np.arange(uniq.size), counts)
        cand_idx = np.full((uniq.size, width), self.n, dtype=np.int64)
        cand_val = np.full((uniq.size, width), np.inf, dtype=np.float32)
        finite = np.where(np.isnan(dist), np.inf, dist)
        cand_idx[group, slot] = cols
        cand_val[group, slot] = finite
        _merge(self.idx, self.val, uniq, cand_idx, cand_val)
        self.idx[self.idx == self.n] = -1
        maxima = np.full(uniq.size, -np.inf, dtype=np.float32)
        np.maximum.at(maxima, group, np.where(np.isnan(dist), -np.inf, dist))
        self.row_max[uniq] = np.maximum(self.row_max[uniq], maxima)
        if self.num_far:
            neg = np.full((uniq.size, width), np.inf, dtype=np.float32)
            neg[group, slot] = np.where(np.isnan(dist), np.inf, -dist)
            _merge(self.far_idx, self.far_val, uniq, cand_idx, neg)
            self.far_idx[self.far_idx == self.n] = -1

    def result(self):
        """The lists sorted by (distance, index); see the class docstring."""
        with self._lock:
            order = np.lexsort((self.idx, self.val), axis=1)
            top = np.take_along_axis(self.idx, order, axis=1)
            dist = np.take_along_axis(self.val, order, axis=1)
            out = {"top": top, "dist": dist, "row_max": self.row_max.copy()}
            if self.num_far:
                order = np.lexsort((self.far_idx, self.far_val), axis=1)
                out["far"] = np.take_along_axis(self.far_idx, order, axis=1)
                out["far_dist"] = -np.take_along_axis(self.far_val, order, axis=1)
        return out
