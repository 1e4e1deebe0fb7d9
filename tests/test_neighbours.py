"""NeighbourLists (streamed k-nearest lists) against sorting the full matrix."""
import numpy as np
import pytest

from fastreid_ms.evaluation.neighbours import NeighbourLists, rerank_kernel

KERNELS = ("numba", "numpy")


def symmetric_with_ties(rng, n, levels=15):
    """Symmetric (n, n) float32 with many equal values (ties must fall back to the index)."""
    full = np.round(rng.random((n, n)) * levels).astype(np.float32)
    return np.triu(full) + np.triu(full, 1).T


def reference(full, k, num_far):
    top = np.argsort(full, axis=1, kind="stable")[:, :k]
    far = np.argsort(-full, axis=1, kind="stable")[:, :num_far]
    return top, far


@pytest.mark.parametrize("kernel", KERNELS)
def test_symmetric_tiles_in_any_order(kernel):
    rng = np.random.default_rng(0)
    n, k, num_far = 61, 7, 4
    full = symmetric_with_ties(rng, n)
    top_ref, far_ref = reference(full, k, num_far)
    lists = NeighbourLists(n, k, num_far=num_far, kernel=kernel)
    # Tiles of uneven shapes covering the whole matrix, shuffled: entries below the diagonal
    # are skipped, so each pair counts once.
    tiles = [(s, t) for s in range(0, n, 10) for t in range(0, n, 13)]
    for pos in rng.permutation(len(tiles)):
        s, t = tiles[pos]
        lists.add_tile(full[s:s + 10, t:t + 13], s, t)
    nb = lists.result()
    np.testing.assert_array_equal(nb["top"], top_ref)
    np.testing.assert_array_equal(nb["dist"], np.take_along_axis(full, top_ref, axis=1))
    np.testing.assert_array_equal(nb["row_max"], full.max(axis=1))
    np.testing.assert_array_equal(nb["far"], far_ref)
    np.testing.assert_array_equal(nb["far_dist"], np.take_along_axis(full, far_ref, axis=1))


@pytest.mark.parametrize("kernel", KERNELS)
def test_rows_and_pairs(kernel):
    """A rectangle given as rows only, its mirror as rows only, then the rest as pairs, equals
    the full scan."""
    rng = np.random.default_rng(1)
    n, k = 40, 5
    full = symmetric_with_ties(rng, n, levels=9)
    lists = NeighbourLists(n, k, kernel=kernel)
    lists.add_tile(full[:25, 25:], 0, 25, symmetric=False)     # rows 0..24, columns 25..39
    lists.add_tile(full[25:, :25], 25, 0, symmetric=False)     # rows 25..39, columns 0..24
    i, j = np.triu_indices(25)
    lists.add_pairs(i, j, full[i, j], symmetric=True)
    i, j = np.triu_indices(15)
    lists.add_pairs(25 + j, 25 + i, full[25 + j, 25 + i], symmetric=True)
    top_ref, _ = reference(full, k, 0)
    np.testing.assert_array_equal(lists.result()["top"], top_ref)
    np.testing.assert_array_equal(lists.result()["row_max"], full.max(axis=1))


@pytest.mark.parametrize("kernel", KERNELS)
def test_nan_ignored_and_short_lists_padded(kernel):
    lists = NeighbourLists(4, 3, kernel=kernel)
    lists.add_tile(np.array([[0.0, np.nan], [np.nan, 0.0]], np.float32), 0, 0)
    lists.add_tile(np.array([[2.0, np.inf]], np.float32), 1, 2, symmetric=False)
    lists.add_tile(np.array([[2.0]], np.float32), 0, 3)
    nb = lists.result()
    np.testing.assert_array_equal(nb["top"][0], [0, 3, -1])
    np.testing.assert_array_equal(nb["dist"][0], [0.0, 2.0, np.inf])
    np.testing.assert_array_equal(nb["top"][3], [0, -1, -1])
    np.testing.assert_array_equal(nb["top"][1], [1, 2, -1])     # +inf is no neighbour
    assert nb["row_max"][1] == np.inf and nb["row_max"][2] == -np.inf


def test_kernels_agree_on_a_large_random_scan():
    rng = np.random.default_rng(2)
    n = 300
    feats = rng.normal(size=(n, 8)).astype(np.float32)
    full = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    out = []
    for kernel in KERNELS:
        lists = NeighbourLists(n, 25, num_far=5, kernel=kernel)
        for s in range(0, n, 64):
            lists.add_tile(full[s:s + 64, s:], s, s)
        out.append(lists.result())
    for key in ("top", "dist", "row_max", "far", "far_dist"):
        np.testing.assert_array_equal(out[0][key], out[1][key])


def test_bad_input_is_named():
    lists = NeighbourLists(5, 2)
    with pytest.raises(ValueError, match="outside"):
        lists.add_tile(np.zeros((3, 3), np.float32), 4, 0)
    with pytest.raises(ValueError, match="differ in length"):
        lists.add_pairs([0, 1], [1], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        lists.add_pairs([0], [7], [0.5])
    with pytest.raises(ValueError, match="FASTREID_RERANK_KERNEL"):
        rerank_kernel("cython")
