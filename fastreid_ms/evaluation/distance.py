"""Distance matrices between feature sets, computed in row blocks so memory stays bounded.

Conventions (those of the seed and of the AlignedReID++ paper's code):
- ``euclidean``: the *squared* euclidean distance ||x||^2 + ||y||^2 - 2 x.y (no square root, no
  clamping: the k-reciprocal re-ranking of the paper's code uses exactly this matrix);
- ``cosine``: 1 - cos(x, y).
"""
import numpy as np

__all__ = ["normalize", "compute_distance", "compute_distance_symmetric", "DEFAULT_BLOCK_SIZE"]

DEFAULT_BLOCK_SIZE = 1024
_METRICS = ("euclidean", "cosine")


def normalize(x, eps=1e-12):
    """Rows of ``x`` (N, D) divided by their L2 norm + eps (as the seed), float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + np.float32(eps))


def _check_metric(metric):
    if metric not in _METRICS:
        raise ValueError(f"Unknown distance metric {metric!r} (TEST.METRIC): use 'euclidean' "
                         "(squared euclidean) or 'cosine'")


def _prepare(x, metric):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        return normalize(x), None
    return x, np.einsum("ij,ij->i", x, x)


def _block(xb, xsq, y, ysq, metric):
    prod = xb @ y.T
    if metric == "cosine":
        return np.subtract(1.0, prod, out=prod)
    prod *= -2.0
    prod += xsq[:, None]
    prod += ysq[None, :]
    return prod


def compute_distance(x, y, metric="euclidean", block_size=DEFAULT_BLOCK_SIZE, out=None):
    """(M, D) x (N, D) -> (M, N) float32 distances, ``block_size`` rows of ``x`` at a time.

    ``out``: an optional (M, N) float32 array (or memory map) to fill.
    """
    _check_metric(metric)
    x, xsq = _prepare(x, metric)
    y, ysq = _prepare(y, metric)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Feature dimensions differ: {x.shape} vs {y.shape}")
    if out is None:
        out = np.empty((x.shape[0], y.shape[0]), dtype=np.float32)
    block_size = max(1, int(block_size))
    for s in range(0, x.shape[0], block_size):
        e = min(s + block_size, x.shape[0])
        out[s:e] = _block(x[s:e], None if xsq is None else xsq[s:e], y, ysq, metric)
    return out


def compute_distance_symmetric(x, metric="euclidean", block_size=DEFAULT_BLOCK_SIZE, out=None,
                               accumulate=False):
    """(N, D) -> (N, N) float32 distances of ``x`` to itself: only the blocks on and above the
    diagonal are computed (half the work), the rest is mirrored, so the result is exactly
    symmetric. ``accumulate``: add to ``out`` (which may be a view) instead of overwriting it."""
    _check_metric(metric)
    x, xsq = _prepare(x, metric)
    n = x.shape[0]
    if out is None:
        out = np.zeros((n, n), dtype=np.float32) if accumulate else np.empty((n, n), np.float32)
    block_size = max(1, int(block_size))
    for s in range(0, n, block_size):
        e = min(s + block_size, n)
        blk = _block(x[s:e], None if xsq is None else xsq[s:e], x[s:],
                     None if xsq is None else xsq[s:], metric)
        diag = blk[:, : e - s]
        diag_sym = np.triu(diag) + np.triu(diag, 1).T
        rest = blk[:, e - s:]
        if accumulate:
            out[s:e, s:e] += diag_sym
            out[s:e, e:] += rest
            out[e:, s:e] += rest.T
        else:
            out[s:e, s:e] = diag_sym
            out[s:e, e:] = rest
            out[e:, s:e] = rest.T
    return out
