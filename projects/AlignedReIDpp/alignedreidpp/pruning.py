"""Exact evaluation with DMLI computed only where it can change a result (TEST.LOCAL.PRUNE).

Every pair of samples gets cheap two-sided bounds of its distance (dmli_bounds.py: DMLI of the
parts projected onto their principal subspace, plus the exact global distance); the exact
distance is computed (and cached, each pair once) only for the pairs whose bounds leave a
result open:

- CMC / mAP / mINP: every correct match, and every wrong match whose bounds hold a correct
  match's distance (fastreid_ms.evaluation.bounded_rank);
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

import numpy as np

from fastreid_ms.evaluation.bounded_rank import match_masks, open_pairs
from fastreid_ms.evaluation.distance import compute_distance
from fastreid_ms.evaluation.neighbours import NeighbourLists
from fastreid_ms.evaluation.rerank import PairLookup, re_ranking_neighbours

from .dmli_bounds import PartProjection, auto_rank, dmli_bounds, dmli_bounds_symmetric_blocks

__all__ = ["ExactPairCache", "PrunedEvaluation", "total_slack"]


def total_slack(values):
    """Allowance for the rounding of a total distance (the global part and the sum): 1e-5 of
    (1 + |value|), far above float32's rounding of either term."""
    return np.float32(1e-5) * (np.float32(1.0) + np.abs(values))


class ExactPairCache:
    """Exact distances of pairs (i, j) of the n samples, each unordered pair computed once by
    ``compute(i, j)`` (with i <= j) and kept; ``computed`` counts them."""

    def __init__(self, n, compute):
        self.n = int(n)
        self.compute = compute
        self.keys = np.empty(0, dtype=np.int64)
        self.vals = np.empty(0, dtype=np.float32)

    @property
    def computed(self):
        return int(self.keys.size)

    def __call__(self, i, j, return_new=False):
        """Distances (T,) float32 of the pairs; with ``return_new`` also the keys
        (min * n + max) and values of the pairs this call computed."""
        i = np.asarray(i, dtype=np.int64).ravel()
        j = np.asarray(j, dtype=np.int64).ravel()
        keys = np.minimum(i, j) * self.n + np.maximum(i, j)
        out = np.empty(keys.shape, dtype=np.float32)
        pos = np.minimum(np.searchsorted(self.keys, keys), max(self.keys.size - 1, 0))
        found = (self.keys[pos] == keys) if self.keys.size else np.zeros(keys.shape, bool)
        out[found] = self.vals[pos[found]]
        new = np.empty(0, dtype=np.int64)
        vals = np.empty(0, dtype=np.float32)
        if not found.all():
            new = np.unique(keys[~found])
            vals = np.asarray(self.compute(new // self.n, new % self.n), dtype=np.float32)
            at = np.searchsorted(self.keys, new)          # both sorted: one merge
            self.keys = np.insert(self.keys, at, new)
            self.vals = np.insert(self.vals, at, vals)
            out[~found] = vals[np.searchsorted(new, keys[~found])]
        if return_new:
            return out, new, vals
        return out


class _Candidates:
    """Candidate pairs (i < j or i == j, global indices) of the neighbour lists, gathered from
    tiles of bounds; thread-safe appends."""

    def __init__(self, k):
        self.k = int(k)
        self.parts = []

    def _row_keep(self, lo, hi, axis):
        """Entries that may be among the k nearest of their row (axis 1) or column (axis 0)
        within this tile, or reach its largest lower bound."""
        size = lo.shape[axis]
        lo_f = np.where(np.isnan(lo), np.inf, lo)
        hi_f = np.where(np.isnan(hi), np.inf, hi)
        if size > self.k:
            kth = np.partition(hi_f, self.k - 1, axis=axis).take(self.k - 1, axis=axis)
        else:
            kth = np.full(lo.shape[1 - axis], np.inf, dtype=np.float32)
        max_lo = np.where(np.isnan(lo), -np.inf, lo).max(axis=axis)
        kth = np.expand_dims(kth, axis)
        max_lo = np.expand_dims(max_lo, axis)
        return (lo_f <= kth) | (np.where(np.isnan(hi), -np.inf, hi) >= max_lo)

    def add(self, lo, hi, row_start, col_start, symmetric_tile=False, both=True):
        """A tile of bounds (b, c) at (row_start, col_start). ``symmetric_tile``: a tile on the
        diagonal of a set against itself (row_start == col_start; only row <= column entries
        meaningful); ``both``: the pairs also belong to the columns' rows (off-diagonal tiles
        of a symmetric matrix, the query x gallery block)."""
        if symmetric_tile:
            upper = np.triu(np.ones(lo.shape, dtype=bool))
            lo = np.where(upper, lo, lo.T)
            hi = np.where(upper, hi, hi.T)
            keep = self._row_keep(lo, hi, 1)
            keep = np.triu(keep | keep.T)
        else:
            keep = self._row_keep(lo, hi, 1)
            if both:
                keep |= self._row_keep(lo, hi, 0)
        r, c = np.nonzero(keep)
        self.parts.append((r + row_start, c + col_start, lo[r, c], hi[r, c]))

    def final(self, n):
        """Per-row candidate lists, both orientations: (rows, partners, lo, hi) of the pairs
        that remain with each row's thresholds over all its tiles (lo <= the k-th smallest
        upper bound of the row, or hi >= the row's largest lower bound), each pair once per
        row it belongs to."""
        i = np.concatenate([p[0] for p in self.parts]).astype(np.int64)
        j = np.concatenate([p[1] for p in self.parts]).astype(np.int64)
        lo = np.concatenate([p[2] for p in self.parts]).astype(np.float32)
        hi = np.concatenate([p[3] for p in self.parts]).astype(np.float32)
        self.parts = []
        # A pair may come from both of its rows' scans (the query x gallery block): once each.
        _, first = np.unique(i * n + j, return_index=True)
        i, j, lo, hi = i[first], j[first], lo[first], hi[first]
        off = i != j
        rows = np.concatenate([i, j[off]])
        partners = np.concatenate([j, i[off]])
        los = np.concatenate([lo, lo[off]])
        his = np.concatenate([hi, hi[off]])
        order = np.argsort(rows, kind="stable")
        rows, partners, los, his = rows[order], partners[order], los[order], his[order]
        counts = np.bincount(rows, minlength=n)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        kth = np.full(n, np.inf, dtype=np.float32)
        max_lo = np.full(n, -np.inf, dtype=np.float32)
        present = counts > 0
        max_lo[present] = np.maximum.reduceat(los, starts[present])
        full = np.nonzero(counts >= self.k)[0]
        for r in full:                      # k-th smallest upper bound of each row
            kth[r] = np.partition(his[starts[r]:starts[r] + counts[r]], self.k - 1)[self.k - 1]
        keep = (los <= kth[rows]) | (his >= max_lo[rows])
        return rows[keep], partners[keep], los[keep], his[keep]


def _exact_neighbour_lists(n, k, rows, partners, lo, hi, cache, first=None, step=8):
    """NeighbourLists (k nearest, row maxima) of exact distances, computing as few as the
    bounds allow: each row's candidates in increasing lower bound while the lower bound can
    still beat the row's current k-th exact distance, and in decreasing upper bound while it
    can still reach the row's current exact maximum (branch and bound, in rounds over all rows).
    ``first``: exact pairs (i, j, d) already known, added first."""
    lists = NeighbourLists(n, k)

    def add(i, j, d):
        """Pairs new to the lists (each unordered pair is computed, and so added, once)."""
        diag = i == j
        lists.add_pairs(i[~diag], j[~diag], d[~diag], symmetric=True)
        lists.add_pairs(i[diag], j[diag], d[diag], symmetric=False)

    if first is not None and first[0].size:
        add(*first)
    # Two queues per row: by lo ascending (nearest) and by hi descending (maximum).
    queues = []
    for key in (lo, -hi):
        order = np.lexsort((key, rows))
        counts = np.bincount(rows, minlength=n)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        queues.append({"order": order, "starts": starts, "ends": starts + counts,
                       "ptr": starts.copy()})
    rounds = 0
    while True:
        take_i, take_j = [], []
        for qi, queue in enumerate(queues):
            ptr, ends, order = queue["ptr"], queue["ends"], queue["order"]
            active = np.nonzero(ptr < ends)[0]
            if active.size == 0:
                continue
            width = k if rounds == 0 and qi == 0 else step
            for _ in range(width):
                pos = ptr[active]
                ok = pos < ends[active]
                idx = order[pos[ok]]
                r = active[ok]
                if qi == 0:   # nearest: lower bound <= current k-th exact (inf while not full)
                    worst = lists.val[r].max(axis=1)
                    ok2 = lo[idx] <= worst
                else:         # maximum: upper bound >= current exact maximum
                    ok2 = hi[idx] >= lists.row_max[r]
                take_i.append(rows[idx[ok2]])
                take_j.append(partners[idx[ok2]])
                # a row stops at its first candidate that can no longer matter
                stop = np.zeros(active.size, dtype=bool)
                stop[np.nonzero(ok)[0][~ok2]] = True
                stop |= ~ok
                ptr[active[stop]] = ends[active[stop]]
                still = ~stop
                ptr[active[still]] += 1
                active = active[still]
                if active.size == 0:
                    break
        rounds += 1
        if not take_i:
            break
        i = np.concatenate(take_i)
        j = np.concatenate(take_j)
        if i.size == 0:
            if all((q["ptr"] >= q["ends"]).all() for q in queues):
                break
            continue
        _, new, vals = cache(i, j, return_new=True)
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
        values[r, c] = self._exact_qg(r, c)
        known |= need
        self.stats["qg_exact"] = int(known.sum())
        self._tick("exact_qg", t)
        return values, known, positive, valid

    # ----------------------------------------------------------------- re-ranking
    def neighbour_lists(self, lo, hi, k):
        """NeighbourLists of every sample (k nearest and row maxima), exact."""
        nq, n = self.nq, self.n
        cands = _Candidates(min(k, n))
        t = time.perf_counter()
        rows = max(1, (1 << 22) // max(1, n - nq))
        for s in range(0, nq, rows):
            cands.add(lo[s:s + rows], hi[s:s + rows], s, nq, both=False)
        # Gallery rows: their query segment is a column of the query x gallery block.
        if nq > cands.k:
            kth = np.partition(hi, cands.k - 1, axis=0)[cands.k - 1]
        else:
            kth = np.full(n - nq, np.inf, dtype=np.float32)
        keep = (lo <= kth[None, :]) | (hi >= lo.max(axis=0)[None, :])
        r, c = np.nonzero(keep)
        cands.parts.append((r, c + nq, lo[r, c], hi[r, c]))
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
        t = time.perf_counter()
        rows, partners, c_lo, c_hi = cands.final(n)
        self.stats["neighbour_candidates"] = int(rows.size)
        before = self.cache.computed
        known = self.cache.keys
        first = (known // n, known % n, self.cache.vals)
        lists = _exact_neighbour_lists(n, min(k, n), rows, partners, c_lo, c_hi, self.cache,
                                       first)
        self.stats["neighbour_exact"] = self.cache.computed - before
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

            def blend(matrices):
                return re_ranking_neighbours(nb["top"], nb["row_max"], self.nq, lookup,
                                             [(lambda s, e, m=m: m[s:e]) for m in matrices],
                                             k1=k1, k2=k2, lambda_value=lam)

            f_lo, f_hi, f_val = blend([lo, hi, values])
            need = open_pairs(f_lo, f_hi, f_val, positive, valid) & ~known
            del f_lo, f_hi
            r, c = np.nonzero(need)
            self.stats["rk_extra_exact"] = int(r.size)
            if r.size:
                values[r, c] = self._exact_qg(r, c)
                f_val = blend([values])[0]
            self._tick("rerank_core", t)
            results.update(rank_fn(f_val, "RK "))
        nq, ng = self.nq, self.n - self.nq
        total = nq * ng + nq * (nq + 1) // 2 + ng * (ng + 1) // 2
        self.stats["pairs_computed"] = self.cache.computed
        self.stats["pairs_total"] = int(total)
        self.stats["fraction_computed"] = self.cache.computed / max(1, total)
        return results
