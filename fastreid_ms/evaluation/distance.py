"""Distance matrices between feature sets, computed in row blocks so memory stays bounded.

Conventions (those of the seed and of the AlignedReID++ paper's code):
- ``euclidean``: the *squared* euclidean distance ||x||^2 + ||y||^2 - 2 x.y (no square root, no
  clamping: the k-reciprocal re-ranking of the paper's code uses exactly this matrix);
- ``cosine``: 1 - cos(x, y).
"""
import numpy as np

from fastreid_ms.utils.threads import run_tasks

__all__ = ["normalize", "compute_distance", "compute_distance_symmetric",
           "stream_symmetric_tiles", "tile_starts", "DEFAULT_BLOCK_SIZE"]

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


def tile_starts(n, block_size, boundaries=()):
    """Start indices of tiles of at most ``block_size`` covering range(n), with every value of
    ``boundaries`` (e.g. the number of queries) a tile start."""
    cuts = sorted({0, n, *[int(b) for b in boundaries if 0 < b < n]})
    starts = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        starts.extend(range(a, b, max(1, int(block_size))))
    return starts + [n]


def stream_symmetric_tiles(x, consume, metric="euclidean", block_size=DEFAULT_BLOCK_SIZE,
                           boundaries=(), num_threads=None):
    """Tiles on and above the diagonal of the distance matrix of ``x`` (N, D) to itself,
    computed in worker threads: ``consume(s, e, t, u, tile)``, tile (e-s, u-t) float32 =
    d(x[s:e], x[t:u]) with t >= s, is called from those threads (so it must be thread-safe)
    for every tile, in no particular order; every value of ``boundaries`` starts a tile."""
    _check_metric(metric)
    x, xsq = _prepare(x, metric)
    starts = tile_starts(x.shape[0], block_size, boundaries)
    tasks = [(a, b) for a in range(len(starts) - 1) for b in range(a, len(starts) - 1)]

    def work(a, b):
        s, e, t, u = starts[a], starts[a + 1], starts[b], starts[b + 1]
        consume(s, e, t, u, _block(x[s:e], None if xsq is None else xsq[s:e], x[t:u],
                                   None if xsq is None else xsq[t:u], metric))

    run_tasks(tasks, work, num_threads)


def compute_distance_symmetric(x, metric="euclidean", block_size=DEFAULT_BLOCK_SIZE, out=None,
                               accumulate=False):
    """(N, D) -> (N, N) float32 distances of ``x`` to itself: only the tiles on and above the
    diagonal are computed (half the work), the rest is mirrored, so the result is exactly
    symmetric. ``accumulate``: add to ``out`` (which may be a view) instead of overwriting it."""
    n = np.asarray(x).shape[0]
    if out is None:
        out = np.zeros((n, n), dtype=np.float32) if accumulate else np.empty((n, n), np.float32)

    def write(s, e, t, u, tile):              # tiles (and their mirrors) never overlap
        if t == s:                             # diagonal tile: exactly symmetric
            tile = np.triu(tile) + np.triu(tile, 1).T
        for rows, cols, values in ((slice(s, e), slice(t, u), tile),
                                   (slice(t, u), slice(s, e), tile.T)):
            if accumulate:
                out[rows, cols] += values
            else:
                out[rows, cols] = values
            if t == s:
                break

    stream_symmetric_tiles(x, write, metric, block_size)
    return out
