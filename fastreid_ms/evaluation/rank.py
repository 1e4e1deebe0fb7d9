"""CMC, mAP and mINP of a query x gallery distance matrix (Market-1501 protocol), vectorised.

Protocol (Zheng et al., ICCV 2015, as the seed's ``eval_market1501``): for each query, gallery
samples with the query's pid *and* camera are left out, and so are junk samples (pid -1);
distractors (pid 0) count as wrong matches. Queries without any remaining correct match are
skipped. Ties in the distances are broken by gallery index (the order of a stable sort), so
the result is deterministic.

``protocol="cuhk03"`` is CUHK03's single-gallery-shot CMC: in each of ``repeats`` draws one
gallery sample per identity is kept (the query's own identity among its valid samples) and the
CMC is averaged over the draws; mAP and mINP use all valid samples, as in torchreid.
"""
import logging

import numpy as np

from fastreid_ms.utils.threads import run_tasks

logger = logging.getLogger("fastreid_ms")

__all__ = ["evaluate_rank", "per_query_metrics"]

# Elements of the distance matrix handled per block (about 16 MB of float32 per array).
_BLOCK_ELEMENTS = 4_000_000


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, protocol="market",
                  repeats=10, seed=0):
    """Rank metrics of ``distmat`` (num_query, num_gallery); smaller is more similar.

    Returns ``(cmc, mAP, mINP)``: ``cmc`` float64 array of length ``max_rank`` (fraction of valid
    queries whose first correct match is within rank r+1; padded with its last value when the
    gallery is shorter), ``mAP`` and ``mINP`` floats, all fractions in [0, 1].
    ``protocol``: "market" or "cuhk03" (single-gallery-shot CMC, ``repeats`` draws from ``seed``).
    Raises ValueError when no query has a correct match in the gallery.
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids).ravel(), np.asarray(g_pids).ravel()
    q_camids, g_camids = np.asarray(q_camids).ravel(), np.asarray(g_camids).ravel()
    _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, protocol)
    num_q, num_g = distmat.shape
    if num_g < max_rank:
        logger.warning("Gallery has only %d samples, fewer than max_rank=%d; CMC beyond rank %d "
                       "repeats its last value.", num_g, max_rank, num_g)

    block = max(1, _BLOCK_ELEMENTS // max(num_g, 1))
    rng = np.random.default_rng(seed) if protocol == "cuhk03" else None
    neg_draws = _draw_one_per_identity(rng, g_pids, repeats) if rng is not None else None

    starts = list(range(0, num_q, block))
    parts = [None] * len(starts)

    def work(index):
        start = starts[index]
        stop = min(start + block, num_q)
        parts[index] = _rank_block(distmat[start:stop], q_pids[start:stop], g_pids,
                                   q_camids[start:stop], g_camids, rng, neg_draws)

    # Market blocks are independent (NumPy releases the GIL): all CPUs; CUHK03 draws in order.
    run_tasks([(i,) for i in range(len(starts))], work, 1 if rng is not None else None)
    first = np.concatenate([p[0] for p in parts], axis=0)   # (num_valid,) or (num_valid, repeats)
    ap = np.concatenate([p[1] for p in parts])
    inp = np.concatenate([p[2] for p in parts])
    if ap.size == 0:
        raise ValueError(
            f"No query has a correct match in the gallery ({num_q} queries, {num_g} gallery "
            "samples): every query identity is absent from the gallery or only appears under the "
            "query's own camera. Check that query and gallery come from the same test set and "
            "that the pids / camids are passed in the right order.")

    ranks = np.arange(1, max_rank + 1)
    if first.ndim == 1:
        cmc = (first[:, None] <= ranks[None, :]).mean(axis=0)
    else:
        cmc = (first[:, :, None] <= ranks[None, None, :]).mean(axis=1).mean(axis=0)
    return cmc.astype(np.float64), float(ap.mean()), float(inp.mean())


def per_query_metrics(distmat, q_pids, g_pids, q_camids, g_camids):
    """Per query (Market-1501 protocol): ``(ap, first_rank)``, float64 (Q,) and int64 (Q,);
    NaN AP and rank 0 for queries without a correct match in the gallery."""
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids).ravel(), np.asarray(g_pids).ravel()
    q_camids, g_camids = np.asarray(q_camids).ravel(), np.asarray(g_camids).ravel()
    _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids, 1, "market")
    num_q, num_g = distmat.shape
    ap = np.full(num_q, np.nan)
    first = np.zeros(num_q, dtype=np.int64)
    block = max(1, _BLOCK_ELEMENTS // max(num_g, 1))
    for start in range(0, num_q, block):
        stop = min(start + block, num_q)
        f, a, _, rows = _rank_block(distmat[start:stop], q_pids[start:stop], g_pids,
                                    q_camids[start:stop], g_camids, None, None, True)
        ap[start + rows] = a
        first[start + rows] = f
    return ap, first


def _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, protocol):
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    for name, arr, n in (("q_pids", q_pids, num_q), ("q_camids", q_camids, num_q),
                         ("g_pids", g_pids, num_g), ("g_camids", g_camids, num_g)):
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} entries but distmat {distmat.shape} "
                             f"needs {n}")
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if protocol not in ("market", "cuhk03"):
        raise ValueError(f"Unknown protocol {protocol!r}: use 'market' or 'cuhk03' (TEST.PROTOCOL)")
    if num_g == 0 or num_q == 0:
        raise ValueError(f"distmat {distmat.shape} is empty: need at least one query and one "
                         "gallery sample")


def _draw_one_per_identity(rng, g_pids, repeats):
    """(repeats, num_gallery) bool: one random gallery sample per identity (junk excluded)."""
    num_g = g_pids.shape[0]
    draws = np.zeros((repeats, num_g), dtype=bool)
    valid = g_pids != -1
    for r in range(repeats):
        keys = rng.random(num_g)
        keys[~valid] = np.inf
        order = np.lexsort((keys, g_pids))          # by pid, then key
        sorted_pids = g_pids[order]
        first = np.ones(num_g, dtype=bool)
        first[1:] = sorted_pids[1:] != sorted_pids[:-1]
        chosen = order[first]
        draws[r, chosen[g_pids[chosen] != -1]] = True
    return draws


def _positions(code_sorted, value):
    """Flattened (row * num_g + sorted position) of the entries equal to ``value``, row-major."""
    return np.flatnonzero(code_sorted == value)


def _order_with_ties_resolved(dist, code):
    """Row-wise argsort whose order equals a stable sort wherever it matters: the fast
    (unstable) sort, then the rows where a correct match ties with a neighbour redone stably."""
    order = np.argsort(dist, axis=1)
    code_sorted = np.take_along_axis(code, order, axis=1)
    num_g = dist.shape[1]
    pos_flat = _positions(code_sorted, 1)
    rows, cols = pos_flat // num_g, pos_flat % num_g
    value = dist[rows, order[rows, cols]]
    tie = np.zeros(rows.shape[0], dtype=bool)
    left = cols > 0
    tie[left] = dist[rows[left], order[rows[left], cols[left] - 1]] == value[left]
    right = cols < num_g - 1
    tie[right] |= dist[rows[right], order[rows[right], cols[right] + 1]] == value[right]
    tie_rows = np.unique(rows[tie])
    if tie_rows.size:
        order[tie_rows] = np.argsort(dist[tie_rows], axis=1, kind="stable")
        code_sorted[tie_rows] = np.take_along_axis(code[tie_rows], order[tie_rows], axis=1)
    return order, code_sorted


def _positive_ranks_sorted(dist, code):
    """Ranks (1-based, among kept samples) of every positive, row-major, from a full row sort.
    Returns (row of each positive, rank, order, sorted position of each positive)."""
    num_g = dist.shape[1]
    order, code_sorted = _order_with_ties_resolved(dist, code)
    # Flattened (row * num_g + sorted position) of positives and of left-out samples, row-major.
    pos_flat = _positions(code_sorted, 1)
    inv_flat = _positions(code_sorted, 2)
    pos_row = pos_flat // num_g
    pos_col = pos_flat - pos_row * num_g
    inv_before = (np.searchsorted(inv_flat, pos_flat)
                  - np.searchsorted(inv_flat, pos_row * num_g))
    return pos_row, pos_col - inv_before + 1, order, pos_col


def _positive_ranks_thresholded(dist, positive, code):
    """The same ranks without sorting whole rows: only samples no farther than a row's last
    positive can come before a positive, so only those are sorted (by distance, then index:
    a stable sort). Returns (row of each positive, rank), row-major and in rank order."""
    last = np.where(positive, dist, -np.inf).max(axis=1)
    rr, cc = np.nonzero(dist <= last[:, None])                 # row-major, index order
    vals = dist[rr, cc]
    if vals.dtype == np.float32 and dist.shape[0] * dist.shape[1] < 2 ** 30:
        # One int64 key per entry: row | order-preserving bits of the value | column, so a plain
        # sort orders by (row, distance, index) -- a stable sort's order, ties included.
        col_bits = max(1, int(dist.shape[1] - 1).bit_length())
        bits = (vals + np.float32(0.0)).view(np.int32)           # -0.0 counts as 0.0
        ordered = np.where(bits < 0, ~bits, bits | np.int32(-2 ** 31)).view(np.uint32)
        keys = ((rr.astype(np.int64) << (32 + col_bits))
                | (ordered.astype(np.int64) << col_bits) | cc)
        keys.sort()
        rr = keys >> (32 + col_bits)
        cc = keys & ((1 << col_bits) - 1)
    else:
        order = np.lexsort((vals, rr))                          # stable: ties keep index order
        rr, cc = rr[order], cc[order]
    code_sorted = code[rr, cc]
    counts = np.bincount(rr, minlength=dist.shape[0])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    is_inv = code_sorted == 2
    inv_cum = np.cumsum(is_inv)
    inv_at_start = np.concatenate(([0], inv_cum))[starts]
    hits = np.nonzero(code_sorted == 1)[0]
    pos_row = rr[hits]
    position = hits - starts[pos_row]                            # 0-based within the row
    inv_before = inv_cum[hits] - is_inv[hits] - inv_at_start[pos_row]
    return pos_row, position - inv_before + 1


def _rank_block(dist, q_pids, g_pids, q_camids, g_camids, rng, neg_draws, with_rows=False):
    """Per valid query of the block: rank of the first correct match (1-based; per draw for
    cuhk03), AP and INP (and the block rows of the valid queries when ``with_rows``)."""
    same_pid = g_pids[None, :] == q_pids[:, None]
    invalid = (same_pid & (g_camids[None, :] == q_camids[:, None])) | (g_pids[None, :] == -1)
    positive = same_pid & ~invalid
    has_pos = positive.any(axis=1)
    if not has_pos.any():
        shape = (0,) if rng is None else (0, neg_draws.shape[0])
        empty = (np.zeros(shape, dtype=np.int64), np.zeros(0), np.zeros(0))
        return empty + (np.zeros(0, dtype=np.int64),) if with_rows else empty
    rows = np.nonzero(has_pos)[0]
    dist, positive, invalid, same_pid = dist[rows], positive[rows], invalid[rows], same_pid[rows]

    code = positive.astype(np.int8) + 2 * invalid.astype(np.int8)
    if rng is None and not np.isnan(dist).any():
        pos_row, rank = _positive_ranks_thresholded(dist, positive, code)
    else:
        pos_row, rank, order, pos_col = _positive_ranks_sorted(dist, code)

    num_rows = rows.shape[0]
    npos = np.bincount(pos_row, minlength=num_rows)
    group_start = np.concatenate(([0], np.cumsum(npos)[:-1]))
    hit_index = np.arange(pos_row.shape[0]) - np.repeat(group_start, npos) + 1
    ap = np.bincount(pos_row, weights=hit_index / rank, minlength=num_rows) / npos
    last_rank = rank[group_start + npos - 1]
    inp = npos / last_rank

    if rng is None:
        first = rank[group_start].astype(np.int64)
        return (first, ap, inp, rows) if with_rows else (first, ap, inp)

    # CUHK03 single-gallery-shot: one drawn sample per other identity, one random positive.
    repeats = neg_draws.shape[0]
    first = np.empty((num_rows, repeats), dtype=np.int64)
    for r in range(repeats):
        other = neg_draws[r][None, :] & ~same_pid
        other_sorted = np.take_along_axis(other, order, axis=1)
        other_before = np.cumsum(other_sorted, axis=1)
        pick = group_start + (rng.random(num_rows) * npos).astype(np.int64)
        pick = np.minimum(pick, group_start + npos - 1)
        col = pos_col[pick]
        before = np.where(col > 0, other_before[np.arange(num_rows), np.maximum(col - 1, 0)], 0)
        first[:, r] = before + 1
    return first, ap, inp
