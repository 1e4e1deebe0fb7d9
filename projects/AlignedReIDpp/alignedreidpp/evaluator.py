"""AlignedReIDEvaluator: global, DMLI local or global + local distances, k-reciprocal
re-ranking with the local distances added (as the paper's code and the seed do).

TEST.EVALUATOR "AlignedReIDEvaluator". Keys (projects/AlignedReIDpp/alignedreidpp/config.py):
- TEST.DISTANCE: "global" (squared euclidean of the L2-normalised global features, as the seed;
  1 - cosine with TEST.METRIC cosine), "local" (DMLI of the "local" part features) or
  "global_local" (their sum);
- TEST.LOCAL.ALIGNED: DMLI shortest path (True) or the unaligned diagonal sum (False);
- TEST.RERANK.*: with CANDIDATES 0 the exact re-ranking of the seed on the (q+g)^2 matrix of
  global + local distances (its q-q and g-g local distances included); with CANDIDATES = K > 0 the
  candidate mode: the query x gallery distances stay exact (so do the plain metrics), but the
  re-ranking's neighbour lists come from each sample's K nearest by the global distance, whose
  local distances alone are computed (plus a few of the farthest, for the row maximum of the
  gallery rows); other pairs the k-reciprocal sets reach are computed on demand. Nothing of
  size (q+g)^2 exists, so memory is linear in the gallery size beyond the (Q, G) matrices
  (MSMT17: 11,659 x 82,161).
"""
import logging
import time

import numpy as np

from fastreid_ms.evaluation.build import EVALUATOR_REGISTRY
from fastreid_ms.evaluation.distance import (compute_distance, compute_distance_symmetric,
                                             normalize, symmetric_tiles)
from fastreid_ms.evaluation.reid_evaluation import ReidEvaluator, pairwise_feature_distance
from fastreid_ms.evaluation.rerank import (PairLookup, re_ranking_dense, re_ranking_neighbours,
                                           tile_neighbours)

from .dmli import dmli_distance, dmli_distance_symmetric, dmli_pairs, dmli_rows

logger = logging.getLogger("fastreid_ms")

__all__ = ["AlignedReIDEvaluator"]

_DISTANCES = ("global", "local", "global_local")
# Farthest samples by the global distance whose local distance is computed in candidate mode,
# so that each row's maximum (the re-ranking normaliser) is estimated from the far end too.
_NUM_FAR = 16


@EVALUATOR_REGISTRY.register()
class AlignedReIDEvaluator(ReidEvaluator):
    """Evaluator of AlignedReID++ features {"global": (N, D), "local": (N, P, C)}; see the module
    docstring for the distances. ``evaluate()`` -> OrderedDict in percent, "RK " keys only with
    re-ranking; ``timings`` holds the seconds of each stage of the last evaluation.
    ``query_gallery_distance(features, num_query)`` -> the (Q, G) ranking distance and
    ``rerank(features, num_query, q_g_dist)`` are usable on their own (tools/rank_gallery.py,
    tools/visualize_result.py)."""

    def _mode(self):
        test = self.cfg.TEST
        if "DISTANCE" not in test or "LOCAL" not in test:
            raise KeyError("AlignedReIDEvaluator needs TEST.DISTANCE and TEST.LOCAL.ALIGNED: add "
                           "'projects.AlignedReIDpp.alignedreidpp' to PLUGINS in the config")
        mode = test.DISTANCE
        if mode not in _DISTANCES:
            raise ValueError(f"TEST.DISTANCE must be one of {_DISTANCES}, got {mode!r}")
        return mode

    def _global_features(self, feats, nq):
        return normalize(super()._global_features(feats, nq))

    def _local_features(self, feats):
        local = np.ascontiguousarray(self._require(feats, "local"), dtype=np.float32)
        if local.ndim != 3:
            raise ValueError(f"The 'local' feature must be (N, parts, channels), got {local.shape}")
        return local

    def _tick(self, name, start):
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def _dmli_kwargs(self):
        return {"aligned": bool(self.cfg.TEST.LOCAL.ALIGNED)}

    # --------------------------------------------------------------------------- plain distance
    def query_gallery_distance(self, feats, nq):
        mode = self._mode()
        # The candidate scan only serves re-ranking.
        candidates = int(self.cfg.TEST.RERANK.CANDIDATES) if self.cfg.TEST.RERANK.ENABLED else 0
        self._mode_cache = mode
        self._candidates = None
        t = time.perf_counter()
        x = self._global_features(feats, nq) if (mode != "local" or candidates > 0) else None
        self._cached_global = x
        if mode == "global":
            dist = compute_distance(x[:nq], x[nq:], self._metric(), self._block_size())
            self._tick("global", t)
            return dist
        local = self._local_features(feats)
        self._cached_local = local
        dist = None
        if mode == "global_local" and candidates == 0:
            dist = compute_distance(x[:nq], x[nq:], self._metric(), self._block_size())
            self._tick("global", t)
        elif candidates > 0:
            dist = self._candidate_scan(x, local, nq, candidates, mode)
        t = time.perf_counter()
        local_qg = dmli_distance(local[:nq], local[nq:], block_size=None, **self._dmli_kwargs())
        self._tick("local_qg", t)
        if dist is None or mode == "local":
            return local_qg
        local_qg += dist            # the seed's local_distmat + distmat
        return local_qg

    # --------------------------------------------------------------------------- candidate mode
    def _candidate_scan(self, x, local, nq, k, mode):
        """Candidate mode: one pass over the tiles of the upper half of the global (q+g)^2
        distance gives every sample's K nearest (and a few farthest) by the global distance and
        the (Q, G) global distance, which is returned; the local distances of those pairs make
        the re-ranking's neighbour lists (sorted by the TEST.DISTANCE distance)."""
        n = x.shape[0]
        ng = n - nq
        k = min(k, n)
        far = min(_NUM_FAR, n)
        metric = self._metric()
        # Tiles wide enough for a cheap top-k (see rerank._topk_sorted), at most 64 MB each.
        bs = min(max(self._block_size(), 16 * k), 4096)
        t = time.perf_counter()
        qg_global = np.empty((nq, ng), dtype=np.float32)

        def tiles():
            for s, e, t0, u, tile in symmetric_tiles(x, metric, bs, (nq,), exact_diagonal=False):
                if s < nq <= t0:                     # tiles are aligned on the query count
                    qg_global[s:e, t0 - nq:u - nq] = tile
                yield s, e, t0, u, tile

        nb = tile_neighbours(tiles(), n, k, num_far=far)
        cand, cand_g = nb["top"], nb["dist"]
        far_idx, far_g = nb["far"], nb["far_dist"]
        empty = far_idx < 0                        # fewer tiles than far slots: repeat one
        if empty.any():
            first = np.argmax(~empty, axis=1)
            rows = np.arange(n)
            far_idx = np.where(empty, far_idx[rows, first][:, None], far_idx)
            far_g = np.where(empty, far_g[rows, first][:, None], far_g)
        self._tick("global", t)

        t = time.perf_counter()
        kw = self._dmli_kwargs()
        cand_l = dmli_rows(local, local, cand, **kw)
        far_l = dmli_rows(local, local, far_idx, **kw)
        self._tick("local_candidates", t)

        with_global = mode == "global_local"
        cand_d = cand_l + cand_g if with_global else cand_l
        far_d = far_l + far_g if with_global else far_l
        order = np.lexsort((cand, cand_d), axis=1)
        cand = np.take_along_axis(cand, order, axis=1)
        cand_d = np.take_along_axis(cand_d, order, axis=1)
        self._candidates = {"top": cand, "dist": np.concatenate([cand_d, far_d], axis=1),
                            "keys": np.concatenate([cand, far_idx], axis=1),
                            "row_max": np.maximum(cand_d.max(axis=1), far_d.max(axis=1))}
        return qg_global if with_global else None

    def _pair_distance(self, i, j):
        """Global + local (per TEST.DISTANCE) distance of the pairs (i, j) of all samples."""
        d = dmli_pairs(self._cached_local, self._cached_local, i, j, **self._dmli_kwargs())
        if self._mode_cache == "global_local":
            x = self._cached_global
            sq = None if self._metric() == "cosine" else np.einsum("ij,ij->i", x, x)
            d = d + pairwise_feature_distance(x, i, j, self._metric(), sq_norms=sq)
        return d

    # --------------------------------------------------------------------------- re-ranking
    def rerank(self, feats, nq, q_g_dist):
        mode = self._mode_cache
        rk = self.cfg.TEST.RERANK
        if mode == "global":
            return super().rerank(feats, nq, q_g_dist)
        if int(rk.CANDIDATES) > 0:
            if getattr(self, "_candidates", None) is None:       # re-ranking not configured
                x = self._global_features(feats, nq)
                self._cached_global = x
                self._candidate_scan(x, self._cached_local, nq, int(rk.CANDIDATES), mode)
            c = self._candidates
            # The query rows are known exactly: their maxima include every gallery sample.
            row_max = c["row_max"].copy()
            row_max[:nq] = np.maximum(row_max[:nq], q_g_dist.max(axis=1))
            lookup = PairLookup(c["keys"], c["dist"], self._pair_distance)
            t = time.perf_counter()
            out = re_ranking_neighbours(c["top"], row_max, nq, lookup,
                                        lambda s, e: q_g_dist[s:e], k1=rk.K1, k2=rk.K2,
                                        lambda_value=rk.LAMBDA)
            self._tick("rerank_core", t)
            return out
        return self._exact_rerank(nq, q_g_dist, mode)

    def _exact_rerank(self, nq, q_g_dist, mode):
        local = self._cached_local
        n = local.shape[0]
        kw = self._dmli_kwargs()
        rows = np.empty((n, n), dtype=np.float32)
        rows[:nq, nq:] = q_g_dist
        rows[nq:, :nq] = q_g_dist.T
        t = time.perf_counter()
        dmli_distance_symmetric(local[:nq], out=rows[:nq, :nq], **kw)
        self._tick("local_qq", t)
        t = time.perf_counter()
        dmli_distance_symmetric(local[nq:], out=rows[nq:, nq:], **kw)
        self._tick("local_gg", t)
        if mode == "global_local":
            t = time.perf_counter()
            x = self._cached_global
            metric, bs = self._metric(), self._block_size()
            compute_distance_symmetric(x[:nq], metric, bs, out=rows[:nq, :nq], accumulate=True)
            compute_distance_symmetric(x[nq:], metric, bs, out=rows[nq:, nq:], accumulate=True)
            self._tick("global_qq_gg", t)
        t = time.perf_counter()
        rk = self.cfg.TEST.RERANK
        out = re_ranking_dense(rows, nq, k1=rk.K1, k2=rk.K2, lambda_value=rk.LAMBDA)
        self._tick("rerank_core", t)
        return out

    def evaluate(self):
        try:
            return super().evaluate()
        finally:
            self._cached_local = None
            self._candidates = None
