"""Exact rank metrics from distance *bounds*: which query x gallery pairs need their exact value.

CMC, mAP and mINP (and CUHK03's single-shot CMC) depend on a query's distances only through
the position of each correct match among the valid gallery samples, that is on how many
wrong matches lie before each correct one. Given lo <= d <= hi for every pair and the exact
distance of every correct match, a wrong match whose interval [lo, hi] holds no correct match's
distance is known to lie before all the correct matches above hi and after all those below lo;
only wrong matches whose interval holds a correct match's distance need their exact distance.
Putting ``lo`` in place of each unresolved distance then gives a matrix with exactly the
metrics of the exact one (ties cannot arise: every correct match is either below lo or above hi).
"""
import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover
    numba = None

from fastreid_ms.utils.threads import run_tasks

__all__ = ["match_masks", "open_pairs"]


def match_masks(q_pids, g_pids, q_camids, g_camids, rows=slice(None)):
    """(positive, valid) bool (b, G) for the query rows ``rows``: valid = not (same pid and
    same camera), the samples the Market-1501 protocol keeps; positive = valid and same pid."""
    qp = np.asarray(q_pids)[rows][:, None]
    qc = np.asarray(q_camids)[rows][:, None]
    same = qp == np.asarray(g_pids)[None, :]
    valid = ~(same & (qc == np.asarray(g_camids)[None, :]))
    return same & valid, valid


def _open_rows(lo, hi, values, positive, valid, out):
    """out[r, j] = valid, not positive, and some positive distance of row r lies in
    [lo[r, j], hi[r, j]]."""
    b, g = lo.shape
    pos = np.empty(g, dtype=np.float32)
    for r in range(b):
        count = 0
        for j in range(g):
            if positive[r, j]:
                pos[count] = values[r, j]
                count += 1
        srt = np.sort(pos[:count])
        for j in range(g):
            out[r, j] = False
            if count == 0 or positive[r, j] or not valid[r, j]:
                continue
            low = lo[r, j]
            # first positive value >= low
            a, z = 0, count
            while a < z:
                mid = (a + z) // 2
                if srt[mid] < low:
                    a = mid + 1
                else:
                    z = mid
            out[r, j] = a < count and srt[a] <= hi[r, j]


_open_rows_jit = numba.njit(nogil=True, cache=True)(_open_rows) if numba is not None else None


def open_pairs(lo, hi, values, positive, valid, num_threads=None):
    """(Q, G) bool: the valid wrong matches whose bounds [lo, hi] hold the exact distance
    (``values``, read where ``positive``) of one of their query's correct matches. All inputs
    (Q, G); rows in blocks over threads."""
    lo = np.ascontiguousarray(lo, dtype=np.float32)
    hi = np.ascontiguousarray(hi, dtype=np.float32)
    values = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty(lo.shape, dtype=bool)
    rows = max(1, 1_000_000 // max(1, lo.shape[1]))

    def work(s):
        e = min(s + rows, lo.shape[0])
        if _open_rows_jit is not None:
            _open_rows_jit(lo[s:e], hi[s:e], values[s:e], positive[s:e], valid[s:e], out[s:e])
        else:  # pragma: no cover - numba is a dependency
            _open_rows(lo[s:e], hi[s:e], values[s:e], positive[s:e], valid[s:e], out[s:e])

    run_tasks([(s,) for s in range(0, lo.shape[0], rows)], work, num_threads)
    return out
