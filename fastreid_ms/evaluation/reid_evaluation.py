"""ReidEvaluator: Rank-k / mAP / mINP of global features, optionally with query expansion and
k-reciprocal re-ranking (TEST.EVALUATOR "ReidEvaluator")."""
import logging
import time
from collections import OrderedDict

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - the numpy path remains
    numba = None

from fastreid_ms.utils.memory import release_freed_memory
from fastreid_ms.utils.threads import run_tasks

from .build import EVALUATOR_REGISTRY
from .distance import compute_distance, normalize, stream_symmetric_tiles
from .neighbours import NeighbourLists
from .rank import evaluate_rank
from .rerank import PairLookup, re_ranking_neighbours

logger = logging.getLogger("fastreid_ms")

__all__ = ["ReidEvaluator", "METRIC_NAMES", "average_query_expansion", "pairwise_feature_distance"]

# Result keys, in table order; the re-ranked ones carry the prefix "RK ".
METRIC_NAMES = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")
RANKS = (1, 5, 10, 20)


def _to_numpy(x):
    if hasattr(x, "asnumpy"):
        return x.asnumpy()
    return np.asarray(x)


def _pair_dots(x, i, j, out):
    """out[t] = x[i[t]] . x[j[t]] (float32 rows of x (N, D), pairs i, j (T,))."""
    d = x.shape[1]
    for t in range(i.shape[0]):
        a, b = x[i[t]], x[j[t]]
        acc = np.float32(0.0)
        for k in range(d):
            acc += a[k] * b[k]
        out[t] = acc


_pair_dots_jit = numba.njit(nogil=True, cache=True, fastmath=True)(_pair_dots) \
    if numba is not None else None


def pairwise_feature_distance(x, i, j, metric, chunk=4096, sq_norms=None, num_threads=None):
    """Distances of the pairs (x[i[t]], x[j[t]]) of rows of ``x`` (N, D), same convention as
    ``compute_distance`` (squared euclidean or 1 - cosine), float32. ``sq_norms``: the (N,)
    squared norms of the rows, when known. The dot products run in a compiled kernel in
    threads where numba imports (no (T, D) gathers), else in NumPy chunks."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    if metric != "cosine" and sq_norms is None:
        sq_norms = np.einsum("ij,ij->i", x, x)
    dot = np.empty(i.shape[0], dtype=np.float32)

    def work(s):
        e = min(s + chunk, i.shape[0])
        if _pair_dots_jit is not None:
            _pair_dots_jit(x, i[s:e], j[s:e], dot[s:e])
        else:  # pragma: no cover - numba is a dependency
            dot[s:e] = np.einsum("ij,ij->i", x[i[s:e]], x[j[s:e]])

    run_tasks([(s,) for s in range(0, i.shape[0], chunk)], work, num_threads)
    if metric == "cosine":
        return (1.0 - dot).astype(np.float32)
    return (sq_norms[i] + sq_norms[j] - 2 * dot).astype(np.float32)


def average_query_expansion(feats, num_query, qe_times=1, qe_k=5, alpha=3.0, block_size=1024):
    """Alpha-weighted average query expansion (as fast-reid's ``aqe``), memory-bounded.

    feats: (N, D) query then gallery features. Each feature becomes the mean of its ``qe_k``
    most cosine-similar features (itself included) weighted by similarity ** alpha; repeated
    ``qe_times`` times. Returns (query (Q, D), gallery (N-Q, D)) float32.
    """
    all_feat = np.asarray(feats, dtype=np.float32)
    n = all_feat.shape[0]
    k = min(int(qe_k), n)
    for _ in range(int(qe_times)):
        norm = normalize(all_feat)
        new = np.empty_like(all_feat)
        for s in range(0, n, block_size):
            e = min(s + block_size, n)
            sims = norm[s:e] @ norm.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            w = np.power(np.take_along_axis(sims, top, axis=1), alpha)
            new[s:e] = np.einsum("bk,bkd->bd", w, all_feat[top]) / k
        all_feat = new
    return all_feat[:num_query], all_feat[num_query:]


def _gather_rows(batches, keep, release_every=1 << 28):
    """The rows ``keep`` (bool, (sum of batch rows,)) of the batches (a list of (B, ...)
    arrays) stacked into one array; each list entry is set to None once copied, and the
    memory of every ``release_every`` bytes of batches goes back to the system as the copy
    grows (release_freed_memory), so that the two never add up. A single batch with every row
    kept is returned as it is."""
    if len(batches) == 1 and keep.all():
        return batches[0]
    out = np.empty((int(keep.sum()),) + batches[0].shape[1:], dtype=batches[0].dtype)
    src = dst = released = 0
    for t, batch in enumerate(batches):
        rows = keep[src:src + batch.shape[0]]
        taken = int(rows.sum())
        out[dst:dst + taken] = batch if taken == batch.shape[0] else batch[rows]
        src += batch.shape[0]
        dst += taken
        released += batch.nbytes
        batches[t] = batch = None
        if released >= release_every:
            release_freed_memory()
            released = 0
    return out


@EVALUATOR_REGISTRY.register()
class ReidEvaluator:
    """Re-ID evaluation of the "global" feature (features dict key).

    ``process(features, pids, camids)`` collects batches (dict of (B, ...) arrays, query samples
    first, then gallery); ``evaluate()`` returns an OrderedDict of percentages: Rank-1/5/10/20,
    mAP, mINP and, with TEST.RERANK.ENABLED, the same prefixed "RK ". Gallery samples with
    pid -1 (junk) are left out entirely.

    Distances: TEST.METRIC "euclidean" (squared euclidean of the features) or "cosine".
    Re-ranking is computed from neighbour lists gathered over the tiles of the upper half of
    the (q+g)^2 distance matrix (computed in worker threads, never stored); for global features
    it is exact and TEST.RERANK.CANDIDATES plays no part.
    """

    feature_key = "global"

    def __init__(self, cfg, num_query, output_dir=None):
        self.cfg = cfg
        self._num_query = int(num_query)
        self._output_dir = output_dir
        self.timings = OrderedDict()
        self.reset()

    # --------------------------------------------------------------- collection
    def reset(self):
        self._features = {}
        self._pids = []
        self._camids = []

    def process(self, features, pids, camids):
        """Add one batch: ``features`` dict of (B, ...) arrays or Tensors (or one array, taken
        as the "global" feature), pids and camids (B,)."""
        if not isinstance(features, dict):
            features = {"global": features}
        for key, value in features.items():
            self._features.setdefault(key, []).append(np.asarray(_to_numpy(value),
                                                                 dtype=np.float32))
        self._pids.append(np.asarray(_to_numpy(pids)).reshape(-1).astype(np.int64))
        self._camids.append(np.asarray(_to_numpy(camids)).reshape(-1).astype(np.int64))

    def _collect(self):
        """(features dict of (N, ...) float32, pids (N,), camids (N,), num_query), junk gallery
        samples left out. Each feature is copied batch by batch into one array and each batch
        is released once copied, so collecting never holds much more than one copy."""
        if not self._pids:
            raise RuntimeError("ReidEvaluator.evaluate() called before any process(): no "
                               "features were collected (is the test loader empty?)")
        pids = np.concatenate(self._pids)
        camids = np.concatenate(self._camids)
        n = pids.shape[0]
        for key, batches in self._features.items():
            rows = sum(b.shape[0] for b in batches)
            if rows != n:
                raise ValueError(f"Feature '{key}' has {rows} rows but {n} pids were given; "
                                 "process() must receive one row per sample")
            shapes = {b.shape[1:] for b in batches}
            if len(shapes) > 1:
                raise ValueError(f"Feature '{key}' came in batches of different shapes per "
                                 f"sample {sorted(shapes)}; every batch must give the same")
        nq = self._num_query
        if not 0 < nq < n:
            raise ValueError(f"num_query={nq} but {n} samples were collected: the test set must "
                             "hold the queries first, then at least one gallery sample")
        keep = np.ones(n, dtype=bool)
        keep[nq:] = pids[nq:] != -1           # junk gallery samples take no part at all
        if not keep.all():
            logger.info("Leaving out %d junk gallery samples (pid -1)", int((~keep).sum()))
        feats = {k: _gather_rows(v, keep) for k, v in self._features.items()}
        pids, camids = pids[keep], camids[keep]
        # queries stay first and a second collection finds no junk: the same result
        self._keep_collected(feats, pids, camids)
        release_freed_memory()                # what the batches held, not kept by the heap
        return feats, pids, camids, nq

    def _keep_collected(self, feats, pids, camids):
        """The collected features replace the per-batch lists (process() may still add)."""
        self._features = {k: [v] for k, v in feats.items()}
        self._pids, self._camids = [pids], [camids]

    def _require(self, feats, key):
        if key not in feats:
            raise KeyError(f"{type(self).__name__} needs the '{key}' feature but the model gave "
                           f"{sorted(feats)}; check MODEL.HEADS / TEST.EVALUATOR")
        return feats[key]

    # --------------------------------------------------------------- distances
    def _metric(self):
        metric = self.cfg.TEST.METRIC
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"TEST.METRIC must be 'euclidean' or 'cosine', got {metric!r}")
        return metric

    def _block_size(self):
        return max(1, int(self.cfg.TEST.BLOCK_SIZE))

    def _global_features(self, feats, nq):
        """(all features (N, D), with AQE applied when enabled)."""
        x = np.ascontiguousarray(self._require(feats, self.feature_key), dtype=np.float32)
        aqe = self.cfg.TEST.AQE
        if aqe.ENABLED:
            t = time.perf_counter()
            q, g = average_query_expansion(x, nq, aqe.QE_TIME, aqe.QE_K, aqe.ALPHA,
                                           self._block_size())
            x = np.concatenate([q, g], axis=0)
            self.timings["aqe"] = time.perf_counter() - t
        if self._metric() == "cosine":
            x = normalize(x)
        return x

    def query_gallery_distance(self, feats, nq):
        """(Q, G) float32 distance used for ranking."""
        x = self._global_features(feats, nq)
        self._cached_global = x
        return compute_distance(x[:nq], x[nq:], self._metric(), self._block_size())

    def rerank(self, feats, nq, q_g_dist):
        """(Q, G) re-ranked distance (k-reciprocal, exact)."""
        x = self._cached_global
        metric = self._metric()
        rk = self.cfg.TEST.RERANK
        lists = NeighbourLists(x.shape[0], max(int(rk.K1) + 1, int(rk.K2)))
        stream_symmetric_tiles(x, lambda s, e, t, u, tile: lists.add_tile(tile, s, t), metric,
                               max(self._block_size(), 256), (nq,))
        nb = lists.result()
        lookup = PairLookup(nb["top"], nb["dist"],
                            lambda i, j: pairwise_feature_distance(x, i, j, metric))
        return re_ranking_neighbours(nb["top"], nb["row_max"], nq, lookup,
                                     lambda s, e: q_g_dist[s:e], k1=rk.K1, k2=rk.K2,
                                     lambda_value=rk.LAMBDA)

    # --------------------------------------------------------------- metrics
    def _rank_metrics(self, dist, pids, camids, nq, prefix=""):
        max_rank = max(int(self.cfg.TEST.MAX_RANK), max(RANKS))
        t = time.perf_counter()
        cmc, mAP, mINP = evaluate_rank(dist, pids[:nq], pids[nq:], camids[:nq], camids[nq:],
                                       max_rank=max_rank, protocol=self.cfg.TEST.PROTOCOL)
        self.timings[prefix + "rank"] = time.perf_counter() - t
        out = OrderedDict()
        for r in RANKS:
            out[f"{prefix}Rank-{r}"] = float(cmc[r - 1] * 100.0)
        out[f"{prefix}mAP"] = float(mAP * 100.0)
        out[f"{prefix}mINP"] = float(mINP * 100.0)
        return out

    def evaluate(self):
        """OrderedDict of metrics in percent (see the class docstring)."""
        self.timings = OrderedDict()
        feats, pids, camids, nq = self._collect()
        t = time.perf_counter()
        dist = self.query_gallery_distance(feats, nq)
        self.timings["distance"] = time.perf_counter() - t
        results = self._rank_metrics(dist, pids, camids, nq)
        if self.cfg.TEST.RERANK.ENABLED:
            t = time.perf_counter()
            rk_dist = self.rerank(feats, nq, dist)
            self.timings["rerank"] = time.perf_counter() - t
            del dist
            results.update(self._rank_metrics(rk_dist, pids, camids, nq, prefix="RK "))
        self._cached_global = None
        logger.info("Evaluated %d queries x %d gallery samples; seconds by stage: %s", nq,
                    pids.shape[0] - nq, ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items()))
        return results
