"""DMLI local distance for evaluation (AlignedReID++: dynamically matching local information).

For two images with part features a (m, C) and b (n, C):
    d_ij = tanh(||a_i - b_j|| / 2)            (= (e^d - 1) / (e^d + 1), as the seed)
    DMLI = length of the shortest path from (0, 0) to (m-1, n-1) through the d_ij grid moving
           only right or down;  ``aligned=False``: sum of the diagonal d_ii (needs m == n).

``dmli_distance`` computes it for every pair of two sets in blocks: one GEMM per block gives all
part distances (augmented so that it yields ||a - b||^2 / 4 directly; y's parts part-major
within a block, so the pairs of one cell lie contiguously), then square root, tanh and the path
recursion: one fused compiled pass (dmli_numba.py, the default where numba imports; about
1.35x faster on the local stages, where the GEMM then dominates), or vectorised numpy over the
whole block (kernel="numpy" or FASTREID_DMLI_KERNEL=numpy). Blocks run in threads (both
release the GIL) with BLAS single-threaded meanwhile. On a GPU / Ascend MindSpore device target
the blocks run through MindSpore operators on the device instead.

``dmli_symmetric_blocks`` streams the tiles of a set against itself to a consumer (the
re-ranking's neighbour lists) so that the (N, N) matrix is never stored; ``dmli_pairs`` /
``dmli_rows`` compute given pairs only (candidate re-ranking, pairs reached on demand) with a
per-pair compiled kernel in threads.
"""
import os
import sys
import threading

import numpy as np

from fastreid_ms.utils.threads import default_num_threads, run_tasks

from . import dmli_numba

__all__ = ["dmli_distance", "dmli_distance_symmetric", "dmli_symmetric_blocks", "dmli_pairs",
           "dmli_rows", "dmli_from_cost", "run_pair_kernel", "default_num_threads", "default_kernel"]

# Part-distance cells per block (2 MB of float32 per worker: about one L2 cache).
_BLOCK_CELLS = 1 << 19
_PAIR_CHUNK = 16384


def default_kernel():
    """CPU block kernel: the environment variable FASTREID_DMLI_KERNEL ("numba" or "numpy")
    when set, else "numba" (the fused compiled kernel of dmli_numba.py) where numba imports
    and "numpy" otherwise."""
    fallback = "numba" if dmli_numba.AVAILABLE else "numpy"
    return os.environ.get("FASTREID_DMLI_KERNEL", fallback) or fallback


def _resolve_kernel(kernel):
    kernel = default_kernel() if kernel is None else str(kernel).lower()
    if kernel not in ("numba", "numpy"):
        raise ValueError(f"DMLI kernel must be 'numba', 'numpy' or None (FASTREID_DMLI_KERNEL), "
                         f"got {kernel!r}")
    if kernel == "numba" and not dmli_numba.AVAILABLE:
        raise ValueError("DMLI kernel 'numba' needs the numba package: pip install numba "
                         "(or pass kernel='numpy')")
    return kernel


# ----------------------------------------------------------------------------- core (numpy)
def _augment(parts, left):
    """(K, C) part vectors -> (K, C+2) so that left @ right.T = ||a - b||^2 / 4."""
    parts = parts.astype(np.float32, copy=False)
    sq = np.einsum("ij,ij->i", parts, parts)[:, None] * np.float32(0.25)
    one = np.ones((parts.shape[0], 1), dtype=np.float32)
    if left:
        return np.concatenate([parts, sq, one], axis=1)
    return np.concatenate([parts * np.float32(-0.5), one, sq], axis=1)


def _squash_inplace(g):
    """||a-b||^2/4 -> tanh(||a-b||/2), in place."""
    np.maximum(g, 0.0, out=g)
    np.sqrt(g, out=g)
    np.tanh(g, out=g)
    return g


def dmli_from_cost(cell, m, n, aligned=True):
    """Path length from a cost accessor: ``cell(i, j)`` -> array of d_ij for every pair.

    aligned: shortest right/down path from (0, 0) to (m-1, n-1); else the diagonal sum.
    """
    if not aligned:
        if m != n:
            raise ValueError(f"Unaligned local distance needs the same number of parts, got "
                             f"{m} and {n}")
        total = np.array(cell(0, 0), dtype=np.float32, copy=True)
        for i in range(1, m):
            total += cell(i, i)
        return total
    row = [None] * n
    row[0] = np.array(cell(0, 0), dtype=np.float32, copy=True)
    for j in range(1, n):
        row[j] = row[j - 1] + cell(0, j)
    for i in range(1, m):
        row[0] += cell(i, 0)
        for j in range(1, n):
            np.minimum(row[j], row[j - 1], out=row[j])
            row[j] += cell(i, j)
    return row[n - 1]


def _check(x, y, aligned):
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if x.ndim != 3 or y.ndim != 3:
        raise ValueError(f"DMLI needs part features (N, P, C); got shapes {x.shape} and {y.shape}")
    if x.shape[2] != y.shape[2]:
        raise ValueError(f"Part feature dimensions differ: {x.shape} vs {y.shape}")
    if not aligned and x.shape[1] != y.shape[1]:
        raise ValueError(f"Unaligned local distance needs the same number of parts, got "
                         f"{x.shape} and {y.shape}")
    return x, y


def part_major_order(num_y, n, col_block):
    """Row order (num_y * n,) that stores the n parts of y's samples part-major within each
    block of ``col_block`` samples, so that a GEMM block's pairs of one cell lie contiguously."""
    perm = np.empty(num_y * n, dtype=np.int64)
    for t in range(0, num_y, col_block):
        u = min(t + col_block, num_y)
        perm[t * n:u * n] = (np.arange(t, u)[None, :] * n + np.arange(n)[:, None]).ravel()
    return perm


class ThreadBuffers:
    """One reusable float32 GEMM buffer per worker thread (at least _BLOCK_CELLS cells)."""

    def __init__(self):
        self._local = threading.local()

    def get(self, rows, cols):
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.size < rows * cols:
            buf = np.empty(max(rows * cols, _BLOCK_CELLS), dtype=np.float32)
            self._local.buf = buf
        return buf[: rows * cols].reshape(rows, cols)


class _BlockRunner:
    """Computes DMLI blocks of x (M, m, C) against y (N, n, C) with per-thread buffers.

    y's augmented parts are stored part-major within each column block of ``col_block``
    samples, so that a block holds g[a*m + i, j*by + b] and the pairs of one cell (i, j) lie
    contiguously; column blocks must start at multiples of ``col_block``.
    """

    def __init__(self, x, y, aligned, kernel, col_block):
        self.x, self.y = x, y
        self.m, self.n = x.shape[1], y.shape[1]
        self.xa = _augment(x.reshape(-1, x.shape[2]), True)
        self.ya = _augment(y.reshape(-1, y.shape[2]), False)
        self.aligned = aligned
        self.kernel = kernel
        self.col_block = col_block
        self.ya = self.ya[part_major_order(y.shape[0], self.n, col_block)]
        self._buffers = ThreadBuffers()

    def block(self, s, e, t, u):
        """(e-s, u-t) DMLI of x[s:e] against y[t:u]."""
        m, n = self.m, self.n
        rows, cols = (e - s) * m, (u - t) * n
        if t % self.col_block:
            raise ValueError(f"Column block start {t} is not a multiple of {self.col_block}")
        g = self._buffers.get(rows, cols)
        np.matmul(self.xa[s * m:e * m], self.ya[t * n:u * n].T, out=g)
        if self.kernel == "numba":
            res = np.empty((e - s, u - t), dtype=np.float32)
            dmli_numba.block_paths(g, m, n, self.aligned, res)
            return res
        # No clamp at 0 here (one pass less): a slightly negative squared distance (identical
        # parts, rounding) gives NaN, and those few pairs are recomputed with the clamp.
        with np.errstate(invalid="ignore"):
            np.sqrt(g, out=g)
        np.tanh(g, out=g)
        g4 = g.reshape(e - s, m, n, u - t)
        res = dmli_from_cost(lambda i, j: g4[:, i, j, :], m, n, self.aligned)
        bad_r, bad_c = np.nonzero(np.isnan(res))
        if bad_r.size:
            res[bad_r, bad_c] = dmli_pairs(self.x, self.y, bad_r + s, bad_c + t, self.aligned)
        return res


def _block_shape(m, n, num_rows, num_cols, block_size):
    bm = max(1, min(num_rows, int(block_size) if block_size else 32))
    bn = max(1, min(num_cols, _BLOCK_CELLS // max(1, bm * m * n)))
    return bm, bn


def _use_device(device):
    """True for the MindSpore operator path: ``device`` given and not CPU, or (None) MindSpore
    already imported with a GPU / Ascend device target. Never imports MindSpore itself."""
    if device is not None:
        return str(device).upper() != "CPU"
    ms = sys.modules.get("mindspore")
    if ms is None:
        return False
    try:
        return ms.get_context("device_target") not in ("CPU", None)
    except Exception:  # noqa: BLE001 - no context yet: CPU path
        return False


def dmli_distance(x, y, aligned=True, block_size=None, num_threads=None, device=None, out=None,
                  kernel=None):
    """DMLI distances of every pair: x (M, m, C) and y (N, n, C) numpy -> (M, N) float32.

    block_size: rows of ``x`` per block (columns are chosen so a block holds about 2M part
    distances); num_threads: CPU worker threads (default: all usable CPUs); device: None to follow
    the MindSpore device target (GPU / Ascend -> MindSpore operators), "CPU" to force the CPU
    path; kernel: CPU block kernel, "numba" (fused, compiled), "numpy" or None (default_kernel()).
    """
    x, y = _check(x, y, aligned)
    num_x, num_y = x.shape[0], y.shape[0]
    if out is None:
        out = np.empty((num_x, num_y), dtype=np.float32)
    if num_x == 0 or num_y == 0:
        return out
    if _use_device(device):
        return _dmli_device(x, y, aligned, block_size, out)
    bm, bn = _block_shape(x.shape[1], y.shape[1], num_x, num_y, block_size)
    runner = _BlockRunner(x, y, aligned, _resolve_kernel(kernel), bn)

    num_threads = num_threads or default_num_threads()
    # A task per stripe of rows (few, long tasks: about 10% faster than one per block) unless
    # there are too few stripes to keep every thread busy.
    stripes = (num_x + bm - 1) // bm >= 4 * num_threads

    def work(s, t):
        e = min(s + bm, num_x)
        for c in ((range(0, num_y, bn)) if stripes else (t,)):
            u = min(c + bn, num_y)
            out[s:e, c:u] = runner.block(s, e, c, u)

    tasks = [(s, t) for s in range(0, num_x, bm)
             for t in ((0,) if stripes else range(0, num_y, bn))]
    run_tasks(tasks, work, num_threads)
    return out


def dmli_symmetric_blocks(x, consume, aligned=True, tile_size=1024, block_size=None,
                          num_threads=None, device=None, kernel=None):
    """DMLI of x (N, m, C) against itself, tile by tile on and above the diagonal, without
    storing the (N, N) matrix: ``consume(s, e, t, u, tile)`` receives tile = DMLI(x[s:e],
    x[t:u]) (float32, t >= s, about ``tile_size`` square) from the worker threads, so it must be
    thread-safe. Every pair i <= j lies in exactly one tile at a position with row <= column;
    in tiles that cross the diagonal the entries below it are NaN (not computed)."""
    x, _ = _check(x, x, aligned)
    num = x.shape[0]
    if num == 0:
        return
    if _use_device(device):
        rows = max(1, min(num, int(block_size) if block_size else 1024))
        for s in range(0, num, rows):
            e = min(s + rows, num)
            consume(s, e, s, num, _dmli_device(x[s:e], x[s:], aligned, block_size,
                                               np.empty((e - s, num - s), np.float32)))
        return
    bm, bn = _block_shape(x.shape[1], x.shape[1], num, num, block_size)
    bn = max(bm, (bn // bm) * bm)           # column blocks aligned to row blocks
    tile = max(bn, (int(tile_size) // bn) * bn)
    runner = _BlockRunner(x, x, aligned, _resolve_kernel(kernel), bn)

    def work(s, t):
        e, u = min(s + tile, num), min(t + tile, num)
        out = np.empty((e - s, u - t), dtype=np.float32)
        for a in range(s, e, bm):
            b = min(a + bm, e)
            for c in range(t, u, bn):
                d = min(c + bn, u)
                if d <= a:                  # wholly below the diagonal
                    out[a - s:b - s, c - t:d - t] = np.nan
                else:
                    out[a - s:b - s, c - t:d - t] = runner.block(a, b, c, d)
        consume(s, e, t, u, out)

    tasks = [(s, t) for s in range(0, num, tile) for t in range(s, num, tile)]
    run_tasks(tasks, work, num_threads)


def dmli_distance_symmetric(x, aligned=True, block_size=None, num_threads=None, device=None,
                            out=None, kernel=None):
    """DMLI of x (N, m, C) against itself, (N, N) float32, exactly symmetric: only blocks on and
    above the diagonal are computed (half the work)."""
    x, _ = _check(x, x, aligned)
    num = x.shape[0]
    if out is None:
        out = np.empty((num, num), dtype=np.float32)

    def fill(s, e, t, u, blk):
        if t < e:                           # the block crosses the diagonal: keep row <= col
            upper = np.arange(s, e)[:, None] <= np.arange(t, u)[None, :]
            view = out[s:e, t:u]
            view[upper] = blk[upper]
        else:
            out[s:e, t:u] = blk

    dmli_symmetric_blocks(x, fill, aligned, block_size=block_size, num_threads=num_threads,
                          device=device, kernel=kernel)
    _mirror_upper(out, 1024)
    return out


def _mirror_upper(out, block):
    """Copy the upper triangle onto the lower one, block row by block row."""
    num = out.shape[0]
    for s in range(0, num, block):
        e = min(s + block, num)
        out[s:e, :s] = out[:s, s:e].T
        diag = out[s:e, s:e]
        lower = np.tril_indices(e - s, -1)
        diag[lower] = diag.T[lower]


def run_pair_kernel(i, j, call, outputs, num_threads=None, chunk=_PAIR_CHUNK):
    """Run ``call(i_chunk, j_chunk, *output_chunks)`` over chunks of the pairs (i, j) in worker
    threads, the pairs taken in (i, j) order (consecutive pairs share x[i] in cache) and split
    so that every thread gets work even from a small call; ``outputs`` are (T,) arrays filled
    in the callers' order."""
    order = None
    if i.shape[0] > 1 and np.any((i[1:] < i[:-1]) | ((i[1:] == i[:-1]) & (j[1:] < j[:-1]))):
        order = np.lexsort((j, i))
        i, j = i[order], j[order]
    threads = num_threads or default_num_threads()
    chunk = int(max(64, min(chunk, -(-i.shape[0] // (4 * threads)))))
    results = outputs if order is None else \
        [np.empty(i.shape[0], dtype=out.dtype) for out in outputs]

    def work(s):
        e = min(s + chunk, i.shape[0])
        call(i[s:e], j[s:e], *[r[s:e] for r in results])

    run_tasks([(s,) for s in range(0, i.shape[0], chunk)], work, threads)
    if order is not None:
        for out, res in zip(outputs, results):
            out[order] = res


def _pairs_compiled(x, y, i, j, aligned, num_threads, chunk=_PAIR_CHUNK, x_sq=None, y_sq=None):
    """The fused pair kernel of dmli_numba.py over chunks of pairs in worker threads."""
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y)
    if x_sq is None:
        x_sq = np.einsum("imc,imc->im", x, x)
    if y_sq is None:
        y_sq = x_sq if y is x else np.einsum("jnc,jnc->jn", y, y)
    x_sq = np.ascontiguousarray(x_sq, dtype=np.float32)
    y_sq = np.ascontiguousarray(y_sq, dtype=np.float32)
    res = np.empty(i.shape[0], dtype=np.float32)
    run_pair_kernel(i, j, lambda a, b, out: dmli_numba.pair_paths(x, y, x_sq, y_sq, a, b,
                                                                  aligned, out),
                    [res], num_threads, chunk)
    return res


def dmli_pairs(x, y, i, j, aligned=True, chunk=_PAIR_CHUNK, kernel=None, num_threads=None,
               x_sq=None, y_sq=None):
    """DMLI of the pairs (x[i[t]], y[j[t]]): x (M, m, C), y (N, n, C), i, j (T,) -> (T,).
    kernel: "numba" (fused per-pair kernel, in threads), "numpy" or None (default_kernel()).
    x_sq (M, m) / y_sq (N, n): the squared part norms when the caller keeps them (the compiled
    kernel otherwise computes them over all of x and y on each call)."""
    x, y = _check(x, y, aligned)
    i = np.asarray(i, dtype=np.int64).ravel()
    j = np.asarray(j, dtype=np.int64).ravel()
    if i.shape != j.shape:
        raise ValueError(f"Pair index arrays differ in length: {i.shape} vs {j.shape}")
    for name, idx, size in (("i", i, x.shape[0]), ("j", j, y.shape[0])):
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            raise ValueError(f"Pair indices {name} must lie in [0, {size})")
    m, n = x.shape[1], y.shape[1]
    res = np.empty(i.shape[0], dtype=np.float32)
    if i.shape[0] == 0:
        return res
    if _resolve_kernel(kernel) == "numba":
        return _pairs_compiled(x, y, i, j, aligned, num_threads, x_sq=x_sq, y_sq=y_sq)
    # Group the pairs by i: one GEMM per distinct i (dmli_rows) instead of one tiny product per
    # pair, as long as padding the groups to the longest one costs little.
    order = np.argsort(i, kind="stable")
    i_sorted, j_sorted = i[order], j[order]
    uniq, starts, counts = np.unique(i_sorted, return_index=True, return_counts=True)
    if uniq.shape[0] * int(counts.max()) <= 4 * i.shape[0]:
        group = np.repeat(np.arange(uniq.shape[0]), counts)
        slot = np.arange(i.shape[0]) - np.repeat(starts, counts)
        cand = np.repeat(j_sorted[starts][:, None], int(counts.max()), axis=1)
        cand[group, slot] = j_sorted
        rows = dmli_rows(x[uniq], y, cand, aligned, kernel="numpy")
        res[order] = rows[group, slot]
        return res
    for s in range(0, i.shape[0], chunk):
        a, b = x[i[s:s + chunk]], y[j[s:s + chunk]]                 # (T, m, C), (T, n, C)
        g = np.matmul(a, b.transpose(0, 2, 1))                      # (T, m, n)
        g *= np.float32(-2.0)
        g += np.einsum("tmc,tmc->tm", a, a)[:, :, None]
        g += np.einsum("tnc,tnc->tn", b, b)[:, None, :]
        g *= np.float32(0.25)
        _squash_inplace(g)
        res[s:s + chunk] = dmli_from_cost(lambda p, q: g[:, p, q], m, n, aligned)
    return res


def dmli_rows(x, y, cand, aligned=True, max_elements=1 << 21, num_threads=None, kernel=None):
    """DMLI of each x[r] against its own list y[cand[r]]: x (M, m, C), y (N, n, C),
    cand (M, K) int -> (M, K) float32. kernel "numba": the per-pair kernel; "numpy": one GEMM
    per row of x, the path recursion vectorised over a chunk of rows."""
    x, y = _check(x, y, aligned)
    cand = np.asarray(cand, dtype=np.int64)
    if cand.ndim != 2 or cand.shape[0] != x.shape[0]:
        raise ValueError(f"cand must be ({x.shape[0]}, K), got {cand.shape}")
    num, k = cand.shape
    m, n, c = x.shape[1], y.shape[1], x.shape[2]
    res = np.empty((num, k), dtype=np.float32)
    if num == 0 or k == 0:
        return res
    if _resolve_kernel(kernel) == "numba":
        rows = np.repeat(np.arange(num, dtype=np.int64), k)
        return dmli_pairs(x, y, rows, cand.ravel(), aligned, kernel="numba",
                          num_threads=num_threads).reshape(num, k)
    xsq = np.einsum("imc,imc->im", x, x)
    ysq = np.einsum("jnc,jnc->jn", y, y)
    rows = max(1, int(max_elements) // max(1, k * n * c))

    def work(s):
        e = min(s + rows, num)
        idx = cand[s:e]
        yc = y[idx].reshape(e - s, k * n, c)                          # (b, K*n, C)
        xt = np.ascontiguousarray(x[s:e].transpose(0, 2, 1))         # (b, C, m)
        g = np.matmul(yc, xt)                                         # (b, K*n, m)
        g *= np.float32(-2.0)
        g += ysq[idx].reshape(e - s, k * n, 1)
        g += xsq[s:e, None, :]
        g *= np.float32(0.25)
        _squash_inplace(g)
        g4 = g.reshape(e - s, k, n, m)
        res[s:e] = dmli_from_cost(lambda i, j: g4[:, :, j, i], m, n, aligned)

    run_tasks([(s,) for s in range(0, num, rows)], work, num_threads)
    return res


# ----------------------------------------------------------------------------- device path
def _dmli_device(x, y, aligned, block_size, out):
    """The same blocks through MindSpore operators on the configured device (GPU / Ascend)."""
    import mindspore as ms
    from mindspore import ops

    m, n = x.shape[1], y.shape[1]
    xa = ms.Tensor(_augment(x.reshape(-1, x.shape[2]), True))
    ya = ms.Tensor(_augment(y.reshape(-1, y.shape[2]), False))
    num_x, num_y = x.shape[0], y.shape[0]
    bm = max(1, min(num_x, int(block_size) if block_size else 1024))
    bn = max(1, min(num_y, (1 << 27) // max(1, bm * m * n)))
    for s in range(0, num_x, bm):
        e = min(s + bm, num_x)
        for t in range(0, num_y, bn):
            u = min(t + bn, num_y)
            g = ops.matmul(xa[s * m:e * m], ya[t * n:u * n].T)
            g = ops.tanh(ops.sqrt(ops.relu(g)))
            g = g.reshape(e - s, m, u - t, n).transpose(1, 3, 0, 2)     # (m, n, bm, bn)
            if not aligned:
                res = ops.sum(ops.stack([g[p, p] for p in range(m)]), 0)
            else:
                row = [g[0, 0]]
                for q in range(1, n):
                    row.append(row[q - 1] + g[0, q])
                for p in range(1, m):
                    row[0] = row[0] + g[p, 0]
                    for q in range(1, n):
                        row[q] = ops.minimum(row[q], row[q - 1]) + g[p, q]
                res = row[n - 1]
            out[s:e, t:u] = res.asnumpy()
    return out
