"""DMLI (dynamically matching local information) distance inside the graph.

For two images with part features a (P, C) and b (Q, C): part distances
d_ij = ||a_i - b_j||, squashed to (e^d - 1) / (e^d + 1) = tanh(d / 2) in [0, 1), then the
length of the shortest path from (0, 0) to (P-1, Q-1) that only moves down or right.

The dynamic programme runs over anti-diagonals (k = i + j): every cell of one anti-diagonal
depends only on the previous one, so each of the P + Q - 1 steps is one vectorised min/add
over the whole batch and the whole diagonal. The loop is unrolled at compile time (P, Q are
static shapes); nothing depends on the batch size, and the result is differentiable.
"""
import mindspore.ops as ops

# Stands in for cells outside the P x Q grid; any real path is shorter than P + Q - 1.
_OUTSIDE = 1e4


def part_distances(x, y):
    """x (N, P, C), y (N, Q, C) -> (N, P, Q) Euclidean distances of every part pair of each
    row pair, sqrt(max(d^2, 1e-12))."""
    xx = (x * x).sum(axis=2, keepdims=True)                      # (N, P, 1)
    yy = (y * y).sum(axis=2, keepdims=True).transpose(0, 2, 1)   # (N, 1, Q)
    d2 = xx + yy - 2.0 * ops.bmm(x, y.transpose(0, 2, 1))
    return ops.sqrt(ops.clamp(d2, min=1e-12))


def squash(dist):
    """(e^d - 1) / (e^d + 1), computed as tanh(d / 2) (no overflow for large d)."""
    return ops.tanh(dist * 0.5)


def _anti_diagonals(cost):
    """cost (B, P, Q) -> (B, P, P + Q - 1) with out[b, i, k] = cost[b, i, k - i] where
    0 <= k - i < Q and _OUTSIDE elsewhere (rows shifted right by their index)."""
    b, p, q = cost.shape
    length = q + p
    padded = ops.concat([cost, ops.full((b, p, p), _OUTSIDE, dtype=cost.dtype)], axis=2)
    flat = padded.reshape(b, p * length)[:, : p * (length - 1)]
    # Reading rows of length L - 1 out of rows of length L shifts row i right by i.
    return flat.reshape(b, p, length - 1)


def shortest_path(cost):
    """cost (..., P, Q) non-negative -> (...) length of the cheapest monotone path from
    (0, 0) to (P-1, Q-1) (moves: down i+1 or right j+1), both end cells included."""
    lead = cost.shape[:-2]
    p, q = cost.shape[-2], cost.shape[-1]
    cost = cost.reshape((-1, p, q))
    diags = _anti_diagonals(cost)                                 # (B, P, P + Q - 1)
    outside = ops.full((cost.shape[0], 1), _OUTSIDE, dtype=cost.dtype)
    best = diags[:, :, 0]                                         # only (0, 0) is inside
    for k in range(1, p + q - 1):
        if p == 1:
            from_up = outside
        else:
            from_up = ops.concat([outside, best[:, : p - 1]], axis=1)  # (i-1, j) on diag k-1
        best = diags[:, :, k] + ops.minimum(best, from_up)         # best itself: (i, j-1)
    return best[:, p - 1].reshape(lead)


def dmli_paired(x, y):
    """x (N, P, C), y (N, Q, C) -> (N,) DMLI distance of x[n] and y[n]."""
    return shortest_path(squash(part_distances(x, y)))


def dmli_matrix(x, y):
    """x (M, P, C), y (N, Q, C) -> (M, N) DMLI distance of every pair (memory M * N * P * Q)."""
    m, p, c = x.shape
    n, q = y.shape[0], y.shape[1]
    xb = ops.broadcast_to(x.reshape(m, 1, p, c), (m, n, p, c)).reshape(m * n, p, c)
    yb = ops.broadcast_to(y.reshape(1, n, q, c), (m, n, q, c)).reshape(m * n, q, c)
    return dmli_paired(xb, yb).reshape(m, n)
