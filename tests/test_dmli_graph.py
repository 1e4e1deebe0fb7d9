"""DMLI distance in the graph (projects/AlignedReIDpp/alignedreidpp/dmli_graph.py) against slow
NumPy references: brute force over every monotone path for small grids, a cell-by-cell
dynamic programme for larger ones."""
import itertools

import numpy as np
import pytest

import fastreid_ms  # noqa: F401
import mindspore as ms

from projects.AlignedReIDpp.alignedreidpp.dmli_graph import (dmli_matrix, dmli_paired,
                                                             part_distances, shortest_path,
                                                             squash)




def brute_force_path(cost):
    """Minimum over every path of P-1 downs and Q-1 rights of the sum of visited cells."""
    p, q = cost.shape
    best = np.inf
    for downs in itertools.combinations(range(p + q - 2), p - 1):
        i = j = 0
        total = float(cost[0, 0])
        for step in range(p + q - 2):
            if step in downs:
                i += 1
            else:
                j += 1
            total += float(cost[i, j])
        best = min(best, total)
    return best


def dp_path(cost):
    """Textbook cell-by-cell dynamic programme."""
    p, q = cost.shape
    d = np.zeros((p, q), dtype=np.float64)
    for i in range(p):
        for j in range(q):
            if i == 0 and j == 0:
                d[i, j] = cost[i, j]
            elif i == 0:
                d[i, j] = d[i, j - 1] + cost[i, j]
            elif j == 0:
                d[i, j] = d[i - 1, j] + cost[i, j]
            else:
                d[i, j] = min(d[i - 1, j], d[i, j - 1]) + cost[i, j]
    return d[-1, -1]


def slow_dmli(a, b):
    """a (P, C), b (Q, C): squash the part distances, then the shortest path."""
    cost = np.zeros((a.shape[0], b.shape[0]))
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            d = np.sqrt(np.sum((a[i].astype(np.float64) - b[j]) ** 2))
            cost[i, j] = (np.exp(d) - 1.0) / (np.exp(d) + 1.0)
    return dp_path(cost)


@pytest.mark.parametrize("p,q", [(1, 1), (1, 5), (5, 1), (2, 3), (3, 2), (4, 4), (5, 6), (7, 7)])
def test_shortest_path_matches_brute_force(pynative, p, q):
    rng = np.random.default_rng(p * 10 + q)
    cost = rng.random((3, p, q)).astype(np.float32)
    out = shortest_path(ms.Tensor(cost)).asnumpy()
    assert out.shape == (3,)
    np.testing.assert_allclose(out, [brute_force_path(c) for c in cost], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p,q,batch", [(8, 8, 5), (12, 7, 3), (6, 16, 1), (24, 24, 2)])
def test_shortest_path_matches_dp_for_larger_grids(pynative, p, q, batch):
    rng = np.random.default_rng(p * 100 + q)
    cost = rng.random((batch, p, q)).astype(np.float32)
    out = shortest_path(ms.Tensor(cost)).asnumpy()
    np.testing.assert_allclose(out, [dp_path(c) for c in cost], rtol=1e-5, atol=1e-5)


def test_shortest_path_keeps_leading_dims_and_prefers_cheap_corridor(pynative):
    cost = np.ones((2, 3, 4, 4), dtype=np.float32)
    # A zero-cost L-shaped corridor: down the first column, then along the last row.
    cost[..., :, 0] = 0.0
    cost[..., -1, :] = 0.0
    out = shortest_path(ms.Tensor(cost)).asnumpy()
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out, 0.0, atol=1e-6)


def test_squash_is_the_seed_formula(pynative):
    def ref(d):
        d = d.astype(np.float64)
        return (np.exp(d) - 1.0) / (np.exp(d) + 1.0)

    # Distances of L2-normalised parts lie in [0, 2]: tight agreement there.
    d = np.linspace(0.0, 2.0, 101).astype(np.float32)
    np.testing.assert_allclose(squash(ms.Tensor(d)).asnumpy(), ref(d), rtol=1e-6, atol=1e-6)
    # Far out (where e^d overflows float32) it stays finite; MindSpore's CPU tanh is an
    # approximation there (about 1e-4 absolute).
    d = np.linspace(0.0, 200.0, 81).astype(np.float32)
    out = squash(ms.Tensor(d)).asnumpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref(np.minimum(d, 50.0)), atol=2e-4)


def test_part_distances_against_numpy(pynative):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5, 6)).astype(np.float32)
    y = rng.normal(size=(4, 3, 6)).astype(np.float32)
    out = part_distances(ms.Tensor(x), ms.Tensor(y)).asnumpy()
    ref = np.sqrt(((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,p", [(1, 8), (7, 8), (4, 3)])
def test_dmli_paired_against_slow_reference(pynative, batch, p):
    rng = np.random.default_rng(batch + p)
    x = rng.normal(size=(batch, p, 16)).astype(np.float32)
    y = rng.normal(size=(batch, p, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=2, keepdims=True)
    y /= np.linalg.norm(y, axis=2, keepdims=True)
    out = dmli_paired(ms.Tensor(x), ms.Tensor(y)).asnumpy()
    np.testing.assert_allclose(out, [slow_dmli(a, b) for a, b in zip(x, y)], rtol=1e-4, atol=1e-4)


def test_dmli_matrix_against_slow_reference(pynative):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4, 8)).astype(np.float32)
    y = rng.normal(size=(5, 4, 8)).astype(np.float32)
    out = dmli_matrix(ms.Tensor(x), ms.Tensor(y)).asnumpy()
    ref = np.array([[slow_dmli(a, b) for b in y] for a in x])
    assert out.shape == (3, 5)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_dmli_in_graph_mode_for_several_batch_sizes(pynative):
    ms.set_context(mode=ms.GRAPH_MODE)
    fn = ms.jit(dmli_paired)
    rng = np.random.default_rng(5)
    for batch in (1, 6):
        x = rng.normal(size=(batch, 6, 8)).astype(np.float32)
        y = rng.normal(size=(batch, 6, 8)).astype(np.float32)
        out = fn(ms.Tensor(x), ms.Tensor(y)).asnumpy()
        np.testing.assert_allclose(out, [slow_dmli(a, b) for a, b in zip(x, y)],
                                   rtol=1e-4, atol=1e-4)


def test_dmli_gradient_is_finite_and_matches_finite_differences(pynative):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 4, 3)).astype(np.float32)
    y = rng.normal(size=(2, 4, 3)).astype(np.float32)

    def total(a, b):
        return dmli_paired(a, b).sum()

    gx, gy = ms.grad(total, grad_position=(0, 1))(ms.Tensor(x), ms.Tensor(y))
    gx = gx.asnumpy()
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gy.asnumpy()))
    assert np.abs(gx).sum() > 0
    # Central differences on the float64 reference (the path is piecewise smooth).
    eps = 1e-3
    x64 = x.astype(np.float64)
    for idx in [(0, 0, 0), (0, 2, 1), (1, 3, 2), (1, 1, 0)]:
        plus, minus = x64.copy(), x64.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric = (sum(slow_dmli(a, b) for a, b in zip(plus, y))
                   - sum(slow_dmli(a, b) for a, b in zip(minus, y))) / (2 * eps)
        assert abs(numeric - gx[idx]) < 2e-2, (idx, numeric, gx[idx])


def test_graph_dmli_agrees_with_the_evaluation_dmli(pynative):
    """Training (graph) and test (NumPy, blocked) DMLI are the same distance."""
    from projects.AlignedReIDpp.alignedreidpp.dmli import dmli_distance
    rng = np.random.default_rng(11)
    x = rng.normal(size=(4, 8, 16)).astype(np.float32)
    y = rng.normal(size=(6, 8, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=2, keepdims=True)
    y /= np.linalg.norm(y, axis=2, keepdims=True)
    graph = dmli_matrix(ms.Tensor(x), ms.Tensor(y)).asnumpy()
    np.testing.assert_allclose(graph, dmli_distance(x, y, aligned=True), rtol=1e-4, atol=1e-4)
