"""Exact evaluation with DMLI computed only where it can change a result (TEST.LOCAL.PRUNE).

Every pair of samples gets cheap two-sided bounds of its distance (dmli_bounds.py: DMLI of the
parts projected onto their principal subspace, plus the exact global distance); the exact
distance is computed (and cached, each pair once) only for the pairs whose bounds leave a
result open:

- CMC / mAP / mINP: every correct match, and every wrong match whose bounds hold a correct
  match's distance (fastreid_ms.evaluation.bounded_rank) even after the pairs so left open got
  second, far tighter bounds from float16 copies of the parts (dmli_bounds.HalfParts: half
  the bytes of an exact pair);
- re-ranking's neighbour lists: for each of the q + g samples, the pairs whose lower bound is
  at most the k-th smallest upper bound of its row (the k = k1 + 1 nearest lie among them) and
  those whose upper bound reaches the row's largest lower bound (the row maximum, the published
  code's normaliser, lies among them); the bounds of the (q+g)^2 matrix stream tile by tile and
  each tile keeps its own candidates by its own (looser) thresholds, so nothing of size
  (q+g)^2 is stored. Pairs the k-reciprocal expansion reaches outside the lists are computed on
  demand, as in the exhaustive path;
- the re-ranked metrics: the final distance is increasing in the original one, so the blend of
  the bounds bounds it; as for the plain metrics, wrong matches whose final bounds hold a
  correct match's final distance get their exact distance, and the blend is redone.

Where no exact value was computed, the matrices given to the rank metrics hold the lower
bound, which lies strictly on the same side of every correct match as the exact value: the
metrics equal those of the exhaustive computation.
"""
import time

import numba
import numpy as np

from fastreid_ms.evaluation.bounded_rank import match_masks, open_pairs
from fastreid_ms.evaluation.distance import compute_distance
from fastreid_ms.evaluation.neighbours import NeighbourLists
from fastreid_ms.evaluation.reid_evaluation import pairwise_feature_distance
from fastreid_ms.evaluation.rerank import PairLookup, re_ranking_neighbours
from fastreid_ms.utils.threads import run_tasks

from .dmli_bounds import (FloatParts, HalfParts, PartProjection, auto_rank, dmli_bounds,
                          dmli_bounds_symmetric_blocks, dmli_pair_bounds)

__all__ = ["ExactPairCache", "PrunedEvaluation", "total_slack"]


def total_slack(values):
    """Allowance for the rounding of a total distance (the global part and the sum): 1e-5 of
    (1 + |value|), far above float32's rounding of either term."""
    return np.float32(1e-5) * (np.float32(1.0) + np.abs(values))


def _row_counts(i, j, counts):
    """Adds to counts[r] the entries per row of the pairs (i, j) listed in both orientations
    (i == j once)."""
    for t in range(i.shape[0]):
        counts[i[t]] += 1
        if j[t] != i[t]:
            counts[j[t]] += 1


def _scatter_rows(i, j, lo, hi, fill, partner, row_lo, row_hi):
    """Counting sort of the pairs by row, both orientations: row r's next entry goes to
    fill[r] (advanced)."""
    for t in range(i.shape[0]):
        a, b = i[t], j[t]
        p = fill[a]
        partner[p], row_lo[p], row_hi[p] = b, lo[t], hi[t]
        fill[a] += 1
        if b != a:
            p = fill[b]
            partner[p], row_lo[p], row_hi[p] = a, lo[t], hi[t]
            fill[b] += 1


def _build_queues(starts, partner, lo, hi, k, r0, r1, near_end, max_end, max_partner, either):
    """The two search queues of the rows r0 .. r1 - 1, built in place from their candidate
    segments [starts[r], starts[r+1]) of (partner, lo, hi). At the front of each segment:
    the candidates with lo <= the row's k-th smallest upper bound, by lo ascending, go to
    (partner, lo) (the nearest-k queue, key lo), and those with hi >= the row's largest lower
    bound, by hi descending, to (max_partner, hi) (the row-maximum queue, key -hi); both
    stable. What lies behind each queue's end is left over. near_end / max_end[r]: where
    each row's queue ends; either[r]: the candidates in at least one queue."""
    for r in range(r0, r1):
        s, e = starts[r], starts[r + 1]
        near_end[r] = s
        max_end[r] = s
        either[r] = 0
        if e == s:
            continue
        seg_partner, seg_lo, seg_hi = partner[s:e].copy(), lo[s:e].copy(), hi[s:e].copy()
        kth = np.inf
        if e - s >= k:
            kth = np.partition(seg_hi.copy(), k - 1)[k - 1]
        max_lo = seg_lo[0]
        for p in range(e - s):
            max_lo = max(max_lo, seg_lo[p])
        near = np.nonzero(seg_lo <= kth)[0]
        order = np.argsort(seg_lo[near], kind="mergesort")
        for t in range(near.shape[0]):
            q = near[order[t]]
            partner[s + t] = seg_partner[q]
            lo[s + t] = seg_lo[q]
        near_end[r] = s + near.shape[0]
        far = np.nonzero(seg_hi >= max_lo)[0]
        neg = -seg_hi[far]
        order = np.argsort(neg, kind="mergesort")
        for t in range(far.shape[0]):
            q = far[order[t]]
            max_partner[s + t] = seg_partner[q]
            hi[s + t] = neg[order[t]]
        max_end[r] = s + far.shape[0]
        count = 0
        for p in range(e - s):
            if seg_lo[p] <= kth or seg_hi[p] >= max_lo:
                count += 1
        either[r] = count


def _round_counts(cursor, end, key, limit, width, counts):
    """counts[r] = how many of row r's next candidates (from cursor[r]) have key <= limit[r],
    at most ``width``; returns their sum."""
    total = 0
    for r in range(cursor.shape[0]):
        p, e, c = cursor[r], end[r], 0
        while p < e and c < width and key[p] <= limit[r]:
            p += 1
            c += 1
        counts[r] = c
        total += c
    return total


def _take_round(cursor, end, key, partner, limit, counts, out_rows, out_partners):
    """Moves each row's cursor past its counts[r] chosen candidates, writing (row, partner)
    of each to out_*; a row whose next candidate then has key > limit (or NaN) is closed
    (cursor = end): the keys ascend and the limits only fall, so none of the rest can pass."""
    t = 0
    for r in range(cursor.shape[0]):
        p = cursor[r]
        for _ in range(counts[r]):
            out_rows[t] = r
            out_partners[t] = partner[p]
            t += 1
            p += 1
        if p < end[r] and not key[p] <= limit[r]:
            p = end[r]
        cursor[r] = p


_build_queues = numba.njit(nogil=True, cache=True)(_build_queues)
_round_counts = numba.njit(nogil=True, cache=True)(_round_counts)
_take_round = numba.njit(nogil=True, cache=True)(_take_round)
_row_counts = numba.njit(nogil=True, cache=True)(_row_counts)
_scatter_rows = numba.njit(nogil=True, cache=True)(_scatter_rows)


def _index_type(n):
    """The narrowest of int32 / int64 that holds the sample indices 0 .. n - 1."""
    return np.int32 if n < 2 ** 31 else np.int64


def _row_tasks(starts, per_task=1 << 20):
    """(r0, r1) row ranges of about ``per_task`` entries each."""
    n = starts.shape[0] - 1
    bounds = np.searchsorted(starts, np.arange(0, int(starts[-1]) + per_task, per_task))
    bounds = np.unique(np.clip(np.concatenate([[0], bounds, [n]]), 0, n))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class ExactPairCache:
    """Exact distances of pairs (i, j) of the n samples, each unordered pair computed once by
    ``compute(i, j)`` (with i <= j) and kept (in a few sorted chunks, merged as they grow);
    ``computed`` counts them."""

    def __init__(self, n, compute):
        self.n = int(n)
        self.compute = compute
        self._chunks = []                         # (sorted keys, values)

    @property
    def computed(self):
        return int(sum(c[0].size for c in self._chunks))

    @property
    def keys(self):
        return np.concatenate([c[0] for c in self._chunks]) if self._chunks else \
            np.empty(0, np.int64)

    @property
    def vals(self):
        return np.concatenate([c[1] for c in self._chunks]) if self._chunks else \
            np.empty(0, np.float32)

    def __call__(self, i, j, return_new=False):
        """Distances (T,) float32 of the pairs; with ``return_new`` also the keys
        (min * n + max) and values of the pairs this call computed."""
        i = np.asarray(i, dtype=np.int64).ravel()
        j = np.asarray(j, dtype=np.int64).ravel()
        keys = np.minimum(i, j) * self.n + np.maximum(i, j)
        out = np.empty(keys.shape, dtype=np.float32)
        found = np.zeros(keys.shape, dtype=bool)
        for ckeys, cvals in self._chunks:
            pos = np.minimum(np.searchsorted(ckeys, keys), ckeys.size - 1)
            hit = (ckeys[pos] == keys) & ~found
            out[hit] = cvals[pos[hit]]
            found |= hit
        new = np.unique(keys[~found])
        vals = np.empty(0, dtype=np.float32)
        if new.size:
            vals = np.asarray(self.compute(new // self.n, new % self.n), dtype=np.float32)
            out[~found] = vals[np.searchsorted(new, keys[~found])]
            self._chunks.append((new, vals))
            # keep few chunks: merge the smallest ones (sizes stay roughly geometric)
            while len(self._chunks) > 1 and \
                    self._chunks[-1][0].size * 2 > self._chunks[-2][0].size:
                (k1, v1), (k2, v2) = self._chunks.pop(), self._chunks.pop()
                merged = np.concatenate([k2, k1])
                order = np.argsort(merged, kind="stable")
                self._chunks.append((merged[order], np.concatenate([v2, v1])[order]))
        if return_new:
            return out, new, vals
        return out


class _Candidates:
    """Candidate pairs of the neighbour lists (global indices, i < j or i == j), gathered from
    tiles of bounds of the (n, n) matrix arriving in any order from worker threads.

    Running per-row thresholds make each tile keep few pairs: the k smallest upper bounds seen
    so far in each row (``NeighbourLists`` of the upper bounds; its k-th is never below the
    row's final k-th smallest upper bound) and the largest lower bound seen so far (never above
    the final one). A pair is kept when its lower bound is at most the first or its upper bound
    at least the second, for either of its rows: a superset of what the final thresholds keep.
    """

    def __init__(self, n, k):
        self.n = int(n)
        self.k = int(k)
        self.parts = []
        self.upper_lists = NeighbourLists(self.n, self.k)
        self.max_lo = np.full(self.n, -np.inf, dtype=np.float32)

    def _thresholds(self, index):
        kth = self.upper_lists.val[index].max(axis=1)          # inf while fewer than k seen
        return kth, self.max_lo[index]

    def add(self, lo, hi, row_start, col_start, symmetric_tile=False):
        """A tile of bounds (b, c) at (row_start, col_start) of the symmetric (n, n) matrix.
        ``symmetric_tile``: a tile on its diagonal (row_start == col_start), where only the
        entries with row <= column are meaningful."""
        b, c = lo.shape
        rows = np.arange(row_start, row_start + b)
        cols = np.arange(col_start, col_start + c)
        if symmetric_tile:
            upper = np.triu(np.ones(lo.shape, dtype=bool))
            lo = np.where(upper, lo, lo.T)
            hi = np.where(upper, hi, hi.T)
            self.upper_lists.add_tile(np.where(upper, hi, np.nan), row_start, col_start)
        else:
            self.upper_lists.add_tile(hi, row_start, col_start)
        # Racing updates of max_lo may lose a larger value: the threshold then stays lower,
        # which keeps more pairs, never fewer.
        self.max_lo[rows] = np.maximum(self.max_lo[rows], lo.max(axis=1))
        self.max_lo[cols] = np.maximum(self.max_lo[cols], lo.max(axis=0))
        kth_r, max_r = self._thresholds(rows)
        kth_c, max_c = self._thresholds(cols)
        keep = ((lo <= kth_r[:, None]) | (hi >= max_r[:, None])
                | (lo <= kth_c[None, :]) | (hi >= max_c[None, :]))
        if symmetric_tile:
            keep = np.triu(keep)
        r, c = np.nonzero(keep)
        index = _index_type(self.n)
        self.parts.append(((r + row_start).astype(index), (c + col_start).astype(index),
                           lo[r, c], hi[r, c]))

    def segments(self, n):
        """Every pair the tiles kept, in per-row segments, both orientations: (starts (n+1,),
        partners, lo, hi), row r's entries at [starts[r], starts[r+1]); partners are int32
        (int64 from 2^31 samples). Every tile of the upper triangle is added once, so no pair
        comes twice in a row. The tiles are released as they are sorted in."""
        counts = np.zeros(n, dtype=np.int64)
        for i, j, _, _ in self.parts:
            _row_counts(i, j, counts)
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        total = int(starts[-1])
        partners = np.empty(total, dtype=_index_type(n))
        los = np.empty(total, dtype=np.float32)
        his = np.empty(total, dtype=np.float32)
        fill = starts[:-1].copy()
        for t in range(len(self.parts)):
            i, j, lo, hi = self.parts[t]
            self.parts[t] = None
            _scatter_rows(i, j, lo, hi, fill, partners, los, his)
        self.parts = []
        return starts, partners, los, his


def _exact_neighbour_lists(n, k, starts, partners, lo, hi, cache, first=None, step=2,
                           taken=None):
    """NeighbourLists (k nearest, row maxima) of exact distances, computing as few as the
    bounds allow (branch and bound, in rounds over all rows at once): each row's candidates in
    increasing lower bound while that bound can still beat the row's current k-th exact
    distance (the first k at once), and in decreasing upper bound while it can still reach the
    row's current exact maximum. Candidates: per-row segments, row r's at
    [starts[r], starts[r+1]) of (partners, lo, hi) (as _Candidates.segments gives them;
    overwritten by the search queues when the arrays are contiguous of those types); each
    row must hold every pair whose lower bound is at most its k-th smallest upper bound and
    every pair whose upper bound reaches its largest lower bound. ``first``: exact pairs
    (i, j, d) already known, added first. ``taken``: a dict that receives the candidates each
    search asked for ("nearest", "maximum"; a pair asked for by both, or already known, counts
    in each) and "candidates", the entries in either search's queue."""
    lists = NeighbourLists(n, k)
    taken = {} if taken is None else taken
    for name in ("nearest", "maximum", "candidates"):
        taken.setdefault(name, 0)

    def add(i, j, d):
        """Pairs new to the lists (each unordered pair is computed, and so added, once)."""
        diag = i == j
        lists.add_pairs(i[~diag], j[~diag], d[~diag], symmetric=True)
        lists.add_pairs(i[diag], j[diag], d[diag], symmetric=False)

    if first is not None and first[0].size:
        add(*first)
    starts = np.asarray(starts, dtype=np.int64)
    partners = np.ascontiguousarray(partners)
    lo = np.ascontiguousarray(lo, dtype=np.float32)
    hi = np.ascontiguousarray(hi, dtype=np.float32)
    # Each queue: per row, the candidates that can matter to its search, sorted by the bound it
    # searches by (nearest: lower bound ascending; maximum: upper bound descending, key -hi),
    # and a cursor past those already taken or ruled out. The nearest-k queue is built in
    # (partners, lo), the row-maximum queue's keys in hi: no second copy of the candidates.
    near_end, max_end, either = (np.empty(n, np.int64) for _ in range(3))
    max_partner = np.empty_like(partners)
    run_tasks(_row_tasks(starts),
              lambda a, b: _build_queues(starts, partners, lo, hi, k, a, b, near_end, max_end,
                                         max_partner, either))
    taken["candidates"] += int(either.sum())
    queues = [("nearest", starts[:-1].copy(), near_end, lo, partners),
              ("maximum", starts[:-1].copy(), max_end, hi, max_partner)]
    counts = np.empty(n, dtype=np.int64)
    first_round = True
    while True:
        sel_rows, sel_partners = [], []
        for name, cursor, end, key, partner in queues:
            if name == "nearest":   # lower bound <= current k-th exact (inf while fewer than k)
                limit = lists.val.max(axis=1)
            else:                   # upper bound >= current exact maximum: -hi <= -maximum
                limit = -lists.row_max
            width = k if first_round and name == "nearest" else step
            num = _round_counts(cursor, end, key, limit, width, counts)
            out_rows, out_partners = np.empty(num, np.int64), np.empty(num, np.int64)
            _take_round(cursor, end, key, partner, limit, counts, out_rows, out_partners)
            taken[name] += num
            sel_rows.append(out_rows)
            sel_partners.append(out_partners)
        first_round = False
        step = int(step * 1.5) + 1               # few rounds even for long candidate lists
        sel_rows, sel_partners = np.concatenate(sel_rows), np.concatenate(sel_partners)
        if sel_rows.size == 0:
            break
        _, new, vals = cache(sel_rows, sel_partners, return_new=True)
        add(new // n, new % n, vals)
    return lists


class PrunedEvaluation:
    """One exact evaluation of global + DMLI (or DMLI) distances with pruning.

    glob: (N, D) float32 global features as the ranking distance uses them (None for DMLI
    alone); local: (N, P, C) float32 parts; queries first. ``pair_distance(i, j)`` gives the
    exact distance of pairs of samples (the evaluator's, so that values match the exhaustive
    path's definition). ``timings`` and ``stats`` (pairs computed) are filled as it runs.
    """

    def __init__(self, glob, local, num_query, pids, camids, pair_distance, metric="euclidean",
                 aligned=True, rank=0, block_size=1024):
        self.glob = glob
        self.local = local
        self.nq = int(num_query)
        self.n = int(local.shape[0])
        self.pids = np.asarray(pids)
        self.camids = np.asarray(camids)
        self.metric = metric
        self.aligned = bool(aligned)
        self.block_size = int(block_size)
        channels = local.shape[2]
        self.rank = int(rank) if int(rank) > 0 else auto_rank(channels)
        self.cache = ExactPairCache(self.n, pair_distance)
        self.timings = {}
        self.stats = {}
        self._proj = None

    def _tick(self, name, start):
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    @property
    def projection(self):
        if self._proj is None:
            t = time.perf_counter()
            self._proj = PartProjection(self.local, self.rank)
            self.stats["projection_energy"] = self._proj.energy
            self.stats["projection_rank"] = self._proj.rank
            self._tick("projection", t)
        return self._proj

    def _global_block(self, s, e, t, u):
        if self.glob is None:
            return None
        return compute_distance(self.glob[s:e], self.glob[t:u], self.metric, self.block_size)

    def _with_slack(self, lo, hi, glob):
        if glob is not None:
            lo += glob
            hi += glob
        lo -= total_slack(lo)
        hi += total_slack(hi)
        return lo, hi

    # ----------------------------------------------------------------- query x gallery
    def query_gallery_bounds(self):
        """(lo, hi) (Q, G) bounds of the total distance."""
        t = time.perf_counter()
        glob = self._global_block(0, self.nq, self.nq, self.n)
        self._tick("global", t)
        proj = self.projection
        t = time.perf_counter()
        lo, hi = dmli_bounds(proj, slice(0, self.nq), slice(self.nq, self.n), self.aligned)
        self._with_slack(lo, hi, glob)
        self._tick("bounds_qg", t)
        return lo, hi

    def refined_bounds(self, rows, cols, half_bytes=1 << 28):
        """(lo, hi) (T,) bounds of the total distance of the query x gallery pairs (rows[t],
        cols[t]) (gallery indices from 0): the float32 query parts against float16 copies of
        the gallery parts (HalfParts, about 2^-11 of the part norms wide). The copies are made
        for blocks of gallery samples of about ``half_bytes`` each, one block at a time."""
        t = time.perf_counter()
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        lo = np.empty(rows.shape[0], dtype=np.float32)
        hi = np.empty(rows.shape[0], dtype=np.float32)
        queries = FloatParts(self.local[:self.nq])      # its terms once, for every block
        per_sample = self.local.shape[1] * self.local.shape[2] * 2
        width = max(1, int(half_bytes) // per_sample)
        block = cols // width
        order = np.argsort(block, kind="stable")         # by block, each still by query
        ends = np.cumsum(np.bincount(block, minlength=int(block.max(initial=0)) + 1))
        start = 0
        for b, end in enumerate(ends):
            if end > start:
                sel = order[start:end]
                g0 = self.nq + b * width
                parts16 = HalfParts(self.local[g0:g0 + width])
                lo[sel], hi[sel] = dmli_pair_bounds(parts16, rows[sel], cols[sel] - b * width,
                                                    self.aligned, x_parts=queries)
                del parts16
            start = end
        glob = None
        if self.glob is not None:
            glob = pairwise_feature_distance(self.glob, rows, cols + self.nq, self.metric)
        self._with_slack(lo, hi, glob)
        self._tick("refine", t)
        return lo, hi

    def _exact_qg(self, rows, cols):
        return self.cache(rows, cols + self.nq)

    def rank_matrix(self, lo, hi):
        """(values, known, positive, valid): values (Q, G) = exact distances of every correct
        match and of the wrong matches left open by the bounds, the lower bound elsewhere."""
        t = time.perf_counter()
        nq = self.nq
        positive, valid = match_masks(self.pids[:nq], self.pids[nq:], self.camids[:nq],
                                      self.camids[nq:])
        values = lo.copy()
        r, c = np.nonzero(positive)
        values[r, c] = self._exact_qg(r, c)
        known = positive.copy()
        need = open_pairs(lo, hi, values, positive, valid)
        r, c = np.nonzero(need)
        self.stats["qg_refined"] = int(r.size)
        if r.size:
            # the second, tighter bounds (float16 parts) of the open pairs, then exact values
            # only where those still leave a result open
            r_lo, r_hi = self.refined_bounds(r, c)
            lo[r, c] = np.maximum(lo[r, c], r_lo)
            hi[r, c] = np.minimum(hi[r, c], r_hi)
            values[r, c] = lo[r, c]
            need = open_pairs(lo, hi, values, positive, valid)
            r, c = np.nonzero(need)
        values[r, c] = self._exact_qg(r, c)
        known |= need
        self.stats["qg_exact"] = int(known.sum())
        self._tick("exact_qg", t)
        return values, known, positive, valid

    # ----------------------------------------------------------------- re-ranking
    def neighbour_lists(self, lo, hi, k):
        """NeighbourLists of every sample (k nearest and row maxima), exact."""
        nq, n = self.nq, self.n
        cands = _Candidates(n, min(k, n))
        t = time.perf_counter()
        rows = max(1, (1 << 22) // max(1, n - nq))
        for s in range(0, nq, rows):
            cands.add(lo[s:s + rows], hi[s:s + rows], s, nq)
        self._tick("neighbours_qg", t)
        proj = self.projection
        for name, start, stop in (("bounds_qq", 0, nq), ("bounds_gg", nq, n)):
            t = time.perf_counter()

            def consume(s, e, a, b, tlo, thi, start=start):
                glob = self._global_block(start + s, start + e, start + a, start + b)
                self._with_slack(tlo, thi, glob)
                cands.add(tlo, thi, start + s, start + a, symmetric_tile=(a == s))

            dmli_bounds_symmetric_blocks(proj, slice(start, stop), consume, self.aligned)
            self._tick(name, t)
        del proj
        self._proj = None                   # every bound is computed: its memory can go
        t = time.perf_counter()
        before = self.cache.computed
        known = self.cache.keys
        first = (known // n, known % n, self.cache.vals)
        del known
        taken = {}
        # the segments are handed over without a reference here: the search overwrites them
        lists = _exact_neighbour_lists(n, min(k, n), *cands.segments(n), self.cache, first,
                                       taken=taken)
        self.stats["neighbour_candidates"] = taken["candidates"]
        self.stats["neighbour_exact"] = self.cache.computed - before
        self.stats["neighbour_asked_nearest"] = taken["nearest"]
        self.stats["neighbour_asked_maximum"] = taken["maximum"]
        self._tick("exact_neighbours", t)
        return lists

    def evaluate(self, rank_fn, rerank=None):
        """rank_fn(matrix, prefix) -> metrics dict; rerank: None or (k1, k2, lambda).
        Returns the merged metrics."""
        lo, hi = self.query_gallery_bounds()
        values, known, positive, valid = self.rank_matrix(lo, hi)
        results = rank_fn(values, "")
        if rerank is not None:
            k1, k2, lam = rerank
            k = max(int(k1) + 1, int(k2))
            lists = self.neighbour_lists(lo, hi, k)
            t = time.perf_counter()
            nb = lists.result()
            lookup = PairLookup(nb["top"], nb["dist"], self.cache)

            def blend(matrices, out=None):
                return re_ranking_neighbours(nb["top"], nb["row_max"], self.nq, lookup,
                                             [(lambda s, e, m=m: m[s:e]) for m in matrices],
                                             k1=k1, k2=k2, lambda_value=lam, out=out)

            # the bounds are not needed after their blend: it is written over them
            f_lo, f_hi, f_val = blend([lo, hi, values], out=[lo, hi, np.empty_like(values)])
            need = open_pairs(f_lo, f_hi, f_val, positive, valid) & ~known
            del f_lo, f_hi, lo, hi
            r, c = np.nonzero(need)
            self.stats["rk_extra_exact"] = int(r.size)
            if r.size:
                values[r, c] = self._exact_qg(r, c)
                f_val = blend([values], out=[f_val])[0]
            self._tick("rerank_core", t)
            results.update(rank_fn(f_val, "RK "))
        nq, ng = self.nq, self.n - self.nq
        total = nq * ng + nq * (nq + 1) // 2 + ng * (ng + 1) // 2
        self.stats["pairs_computed"] = self.cache.computed
        self.stats["pairs_total"] = int(total)
        self.stats["fraction_computed"] = self.cache.computed / max(1, total)
        return results
