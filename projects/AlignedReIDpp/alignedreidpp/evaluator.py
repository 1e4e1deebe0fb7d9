"""AlignedReIDEvaluator: global, DMLI local or global + local distances, k-reciprocal
re-ranking with the local distances added (as the paper's code and the seed do).

TEST.EVALUATOR "AlignedReIDEvaluator". Keys (projects/AlignedReIDpp/alignedreidpp/config.py):
- TEST.DISTANCE: "global" (squared euclidean of the L2-normalised global features, as the seed;
  1 - cosine with TEST.METRIC cosine), "local" (DMLI of the "local" part features) or
  "global_local" (their sum);
- TEST.LOCAL.ALIGNED: DMLI shortest path (True) or the unaligned diagonal sum (False);
- TEST.DISTANCE "all": the paper's table from one set of features, its five columns
  (DISTANCE_TABLE_COLUMNS): Global, Local (unaligned), DMLI, Global+DMLI and Global+DMLI
  re-ranked, each with the metrics another TEST.DISTANCE / ALIGNED / RERANK run would give
  (keys "<column>/Rank-1", ...; the plain and "RK " keys repeat the last two columns);
  TEST.LOCAL.ALIGNED and TEST.RERANK.ENABLED play no part there, the other RERANK keys do;
- TEST.RERANK.*: with CANDIDATES 0 the exact re-ranking of the seed on the (q+g)^2 matrix of
  global + local distances (its q-q and g-g local distances included); with CANDIDATES = K > 0 the
  candidate mode: query x gallery and query x query distances stay exact (so do the plain
  metrics and the queries' neighbour lists), but each gallery sample's gallery neighbours come
  from its K nearest by the global distance, whose local distances alone are computed (plus a
  few of the farthest, for the row maximum); other pairs the k-reciprocal sets reach are
  computed on demand. Either way the (q+g)^2 matrix is never stored: its tiles stream into
  neighbour lists, so memory beyond the (Q, G) matrices is linear in the gallery size (MSMT17:
  11,659 x 82,161), and the candidate mode skips almost all of the gallery x gallery DMLI.
"""
import logging
import time
from collections import OrderedDict

import numpy as np

from fastreid_ms.evaluation.build import EVALUATOR_REGISTRY
from fastreid_ms.evaluation.distance import (compute_distance, compute_distance_symmetric,
                                             normalize, stream_symmetric_tiles)
from fastreid_ms.evaluation.neighbours import NeighbourLists
from fastreid_ms.evaluation.reid_evaluation import (METRIC_NAMES, ReidEvaluator,
                                                    pairwise_feature_distance)
from fastreid_ms.evaluation.rerank import PairLookup, re_ranking_neighbours

from .dmli import dmli_distance, dmli_distance_symmetric, dmli_pairs, dmli_symmetric_blocks
from .dmli_bounds import MIN_PRUNE_CHANNELS, auto_rank
from .pruning import PrunedEvaluation

logger = logging.getLogger("fastreid_ms")

__all__ = ["AlignedReIDEvaluator", "DISTANCE_TABLE_COLUMNS"]

_DISTANCES = ("global", "local", "global_local", "all")
# TEST.DISTANCE "all": (column, the TEST.DISTANCE, TEST.LOCAL.ALIGNED and TEST.RERANK.ENABLED
# of the single run whose metrics the column holds).
DISTANCE_TABLE_COLUMNS = (("Global", "global", True, False),
                          ("Local", "local", False, False),
                          ("DMLI", "local", True, False),
                          ("Global+DMLI", "global_local", True, False),
                          ("Global+DMLI RK", "global_local", True, True))
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
        aligned = getattr(self, "_aligned_override", None)
        if aligned is None:
            aligned = bool(self.cfg.TEST.LOCAL.ALIGNED)
        return {"aligned": aligned}

    # --------------------------------------------------------------------------- plain distance
    def query_gallery_distance(self, feats, nq):
        mode = self._mode()
        if mode == "all":  # a single ranking distance (tools/rank_gallery.py): the seed's
            mode = "global_local"
        self._mode_cache = mode
        rk = self.cfg.TEST.RERANK
        # Candidate re-ranking picks gallery neighbours by the global distance, even in "local".
        needs_global = mode != "local" or (rk.ENABLED and int(rk.CANDIDATES) > 0)
        t = time.perf_counter()
        x = self._global_features(feats, nq) if needs_global else None
        self._cached_global = x
        dist = None
        if mode != "local":
            dist = compute_distance(x[:nq], x[nq:], self._metric(), self._block_size())
        self._tick("global", t)
        if mode == "global":
            return dist
        local = self._local_features(feats)
        self._cached_local = local
        logger.info("DMLI distances of %d queries x %d gallery samples ...", nq, len(local) - nq)
        t = time.perf_counter()
        local_qg = dmli_distance(local[:nq], local[nq:], block_size=None, **self._dmli_kwargs())
        self._tick("local_qg", t)
        if dist is None:
            return local_qg
        local_qg += dist            # the seed's local_distmat + distmat
        return local_qg

    # --------------------------------------------------------------------------- re-ranking
    def _with_global(self):
        return self._mode_cache == "global_local"

    def _squared_norms(self, name, features, subscripts):
        """Squared norms of a cached feature array, computed once per array."""
        held = getattr(self, "_norms_" + name, None)
        if held is None or held[0] is not features:
            held = (features, np.einsum(subscripts, features, features))
            setattr(self, "_norms_" + name, held)
        return held[1]

    def _pair_distance(self, i, j):
        """Global + local (per TEST.DISTANCE) distance of the pairs (i, j) of all samples."""
        local = self._cached_local
        part_sq = self._squared_norms("local", local, "imc,imc->im")
        d = dmli_pairs(local, local, i, j, x_sq=part_sq, y_sq=part_sq, **self._dmli_kwargs())
        if self._with_global():
            x = self._cached_global
            sq = None if self._metric() == "cosine" else \
                self._squared_norms("global", x, "ij,ij->i")
            d = d + pairwise_feature_distance(x, i, j, self._metric(), sq_norms=sq)
        return d

    def rerank(self, feats, nq, q_g_dist):
        """k-reciprocal re-ranking of the TEST.DISTANCE distance (global + local as the seed).

        The (q+g)^2 matrix is never stored: its tiles stream into per-sample neighbour lists
        (fastreid_ms.evaluation.neighbours). Query x gallery pairs come from ``q_g_dist``, query
        x query pairs are computed exactly; gallery x gallery pairs exactly (CANDIDATES 0) or,
        in candidate mode, only for each gallery sample's K nearest (and a few farthest) by the
        global distance."""
        if self._mode_cache == "global":
            return super().rerank(feats, nq, q_g_dist)
        rk = self.cfg.TEST.RERANK
        if self._cached_global is None and (self._with_global() or int(rk.CANDIDATES) > 0):
            self._cached_global = self._global_features(feats, nq)
        local = self._cached_local
        n = local.shape[0]
        lists = NeighbourLists(n, max(int(rk.K1) + 1, int(rk.K2)))
        t = time.perf_counter()
        rows = max(1, (1 << 22) // max(1, n - nq))
        for s in range(0, nq, rows):
            lists.add_tile(q_g_dist[s:s + rows], s, nq)
        self._tick("neighbours_qg", t)
        t = time.perf_counter()
        lists.add_tile(self._query_query_distance(nq), 0, 0)
        self._tick("local_qq", t)
        logger.info("Re-ranking: gallery x gallery distances (%s) ...",
                    f"DMLI of {int(rk.CANDIDATES)} candidates each" if int(rk.CANDIDATES) > 0
                    else "every pair")
        t = time.perf_counter()
        if int(rk.CANDIDATES) > 0:
            self._gallery_candidates(lists, nq, int(rk.CANDIDATES))
        else:
            self._gallery_exact(lists, nq)
        self._tick("local_gg", t)
        t = time.perf_counter()
        nb = lists.result()
        lookup = PairLookup(nb["top"], nb["dist"], self._pair_distance)
        out = re_ranking_neighbours(nb["top"], nb["row_max"], nq, lookup,
                                    lambda s, e: q_g_dist[s:e], k1=rk.K1, k2=rk.K2,
                                    lambda_value=rk.LAMBDA)
        self._tick("rerank_core", t)
        return out

    def _query_query_distance(self, nq):
        """(Q, Q) distance of the queries to each other (exact, symmetric)."""
        qq = dmli_distance_symmetric(self._cached_local[:nq], **self._dmli_kwargs())
        if self._with_global():
            compute_distance_symmetric(self._cached_global[:nq], self._metric(),
                                       self._block_size(), out=qq, accumulate=True)
        return qq

    def _gallery_exact(self, lists, nq):
        """Every gallery x gallery pair: DMLI blocks (+ the global distance of the same block)
        streamed into ``lists`` from the worker threads."""
        x = self._cached_global[nq:] if self._with_global() else None
        metric = self._metric()

        def consume(s, e, t, u, block):
            if x is not None:
                block = block + compute_distance(x[s:e], x[t:u], metric, e - s)
            lists.add_tile(block, nq + s, nq + t)

        dmli_symmetric_blocks(self._cached_local[nq:], consume, **self._dmli_kwargs())

    def _gallery_candidates(self, lists, nq, k):
        """Candidate mode: each gallery sample's ``k`` nearest and ``_NUM_FAR`` farthest gallery
        samples by the global distance (one threaded scan of the upper half of the gallery x
        gallery global distance, never stored), then the local distance of those pairs only."""
        t0 = time.perf_counter()
        x = self._cached_global[nq:]
        ng = x.shape[0]
        # At least as many candidates as the lists keep, so that every list fills up.
        scan = NeighbourLists(ng, max(int(k), lists.k), num_far=_NUM_FAR)
        bs = max(self._block_size(), 256)
        stream_symmetric_tiles(x, lambda s, e, t, u, tile: scan.add_tile(tile, s, t),
                               self._metric(), bs)
        nb = scan.result()
        self._tick("gallery_scan", t0)
        cand = np.concatenate([nb["top"], nb["far"]], axis=1)
        glob = np.concatenate([nb["dist"], nb["far_dist"]], axis=1)
        rows = np.repeat(np.arange(ng), cand.shape[1])
        cols = cand.ravel()
        valid = cols >= 0
        # Each unordered pair once (j may hold i among its own candidates too).
        keys = np.minimum(rows, cols) * ng + np.maximum(rows, cols)
        _, first = np.unique(np.where(valid, keys, -1), return_index=True)
        first = first[valid[first]]
        rows, cols = rows[first], cols[first]
        d = dmli_pairs(self._cached_local[nq:], self._cached_local[nq:], rows, cols,
                       **self._dmli_kwargs())
        if self._with_global():
            d = d + glob.ravel()[first]
        lists.add_pairs(nq + rows, nq + cols, d, symmetric=True)

    # --------------------------------------------------------------------------- pruned path
    def _use_pruning(self):
        local = self.cfg.TEST.LOCAL
        return (bool(local.get("PRUNE", False)) and self._mode() != "global"
                and int(self.cfg.TEST.RERANK.CANDIDATES) == 0)

    def _evaluate_pruned(self):
        """evaluate() with TEST.LOCAL.PRUNE: the same metrics, DMLI computed only where they
        depend on it (pruning.py); ``prune_stats`` tells how many pairs were computed."""
        self.timings = {}
        feats, pids, camids, nq = self._collect()
        dim = int(self.cfg.TEST.LOCAL.get("PRUNE_DIM", 0))
        if dim <= 0 and auto_rank(self._local_features(feats).shape[2]) == 0:
            logger.info("TEST.LOCAL.PRUNE: parts of %d channels, below %d: every pair's DMLI "
                        "is computed (cheaper there)", feats["local"].shape[2], MIN_PRUNE_CHANNELS)
            return ReidEvaluator.evaluate(self)
        mode = self._mode()
        self._mode_cache = mode
        t = time.perf_counter()
        self._cached_global = self._global_features(feats, nq) if mode != "local" else None
        self._cached_local = self._local_features(feats)
        self._tick("features", t)
        run = PrunedEvaluation(self._cached_global, self._cached_local, nq, pids, camids,
                               self._pair_distance, self._metric(),
                               aligned=bool(self.cfg.TEST.LOCAL.ALIGNED),
                               rank=int(self.cfg.TEST.LOCAL.get("PRUNE_DIM", 0)),
                               block_size=self._block_size())
        rk = self.cfg.TEST.RERANK
        rerank = (rk.K1, rk.K2, rk.LAMBDA) if rk.ENABLED else None
        results = run.evaluate(lambda m, prefix: self._rank_metrics(m, pids, camids, nq, prefix),
                               rerank)
        for key, value in run.timings.items():
            self.timings[key] = self.timings.get(key, 0.0) + value
        self.prune_stats = dict(run.stats)
        logger.info("Evaluated %d queries x %d gallery samples with pruning (projection on %d "
                    "of %d dims, %.4f of the energy): exact distances of %d pairs, %.3f%% of %d; "
                    "seconds by stage: %s", nq, pids.shape[0] - nq, run.stats["projection_rank"],
                    self._cached_local.shape[2], run.stats["projection_energy"],
                    run.stats["pairs_computed"], 100 * run.stats["fraction_computed"],
                    run.stats["pairs_total"],
                    ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items()))
        return results

    # --------------------------------------------------------------------------- the table
    def _evaluate_table(self):
        """TEST.DISTANCE "all": the five columns of DISTANCE_TABLE_COLUMNS from the features
        collected once; each distance is computed once and shared by the columns that use it
        (the global one by Global, Global+DMLI and its re-ranking; the DMLI one likewise)."""
        self.timings = OrderedDict()
        feats, pids, camids, nq = self._collect()
        metric, bs = self._metric(), self._block_size()
        t = time.perf_counter()
        x = self._global_features(feats, nq)
        global_qg = compute_distance(x[:nq], x[nq:], metric, bs)
        self._tick("global", t)
        local = self._local_features(feats)
        logger.info("Distance table: unaligned and DMLI local distances of %d queries x %d "
                    "gallery samples ...", nq, len(local) - nq)
        t = time.perf_counter()
        local_qg = dmli_distance(local[:nq], local[nq:], block_size=None, aligned=False)
        self._tick("local_unaligned_qg", t)
        t = time.perf_counter()
        dmli_qg = dmli_distance(local[:nq], local[nq:], block_size=None, aligned=True)
        self._tick("local_qg", t)
        both_qg = dmli_qg + global_qg      # as TEST.DISTANCE global_local adds them
        results = OrderedDict()
        plain = {"Global": global_qg, "Local": local_qg, "DMLI": dmli_qg, "Global+DMLI": both_qg}
        for column, _, _, rerank in DISTANCE_TABLE_COLUMNS:
            if rerank:
                self._mode_cache = "global_local"
                self._cached_global, self._cached_local = x, local
                self._aligned_override = True
                t = time.perf_counter()
                try:
                    dist = self.rerank(feats, nq, both_qg)
                finally:
                    self._aligned_override = None
                self.timings["rerank"] = time.perf_counter() - t
            else:
                dist = plain[column]
            results.update(self._rank_metrics(dist, pids, camids, nq, prefix=column + "/"))
        for name in METRIC_NAMES:  # the usual keys: TEST.DISTANCE global_local with re-ranking
            results[name] = results["Global+DMLI/" + name]
        for name in METRIC_NAMES:
            results["RK " + name] = results["Global+DMLI RK/" + name]
        logger.info("Evaluated %d queries x %d gallery samples at the five test distances; "
                    "seconds by stage: %s", nq, pids.shape[0] - nq,
                    ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items()))
        return results

    def evaluate(self):
        self.prune_stats = None
        try:
            if self._mode() == "all":
                return self._evaluate_table()
            if self._use_pruning():
                return self._evaluate_pruned()
            return super().evaluate()
        finally:
            self._cached_local = None
            self._cached_global = None
            self._norms_local = self._norms_global = None
