"""Two-sided bounds of the DMLI distance from a low-dimensional projection of the parts.

For an orthonormal basis V (C, r) of the parts' principal subspace, each part a splits into
its projection z = a V and a residual of norm rho = sqrt(||a||^2 - ||z||^2). For two parts,

    ||z_a - z_b||^2 + (rho_a - rho_b)^2  <=  ||a - b||^2  <=  ||z_a - z_b||^2 + (rho_a + rho_b)^2

(the residuals are orthogonal to the subspace; the triangle inequality bounds the norm of their
difference). tanh(sqrt(.) / 2) is increasing and so is the shortest right/down path (or the
diagonal sum) in every cell, so the cell bounds give DMLI bounds: lo <= DMLI <= hi. An r-dim
product costs r / C of the exact one, so the bounds of every pair are cheap, and the exact DMLI
is needed only for pairs whose bounds leave a result open (see pruning.py).

Rounding: the exact kernels compute ||a - b||^2 / 4 with a float32 GEMM of C + 2 terms, so
their value may differ from the real one by up to (C + 2) u (||a||^2 + ||b||^2) / 2 (u =
2^-24, the worst-case bound of a float32 sum); ``tau`` widens every cell by that much (plus the
projection's own rounding), and ``PATH_SLACK`` (per path cell) covers the tanh approximation, so
the bounds hold for the computed values, not only for the real ones. The bounds kernel takes
tanh from a cheaper rational function, within ``dmli_numba.BOUND_COST_ERROR`` of the exact
kernels' (added per path cell as well).
"""
import numpy as np

from fastreid_ms.utils.threads import default_num_threads, run_tasks

from . import dmli_numba
from .dmli import ThreadBuffers, _augment, _block_shape, part_major_order, run_pair_kernel

__all__ = ["PartProjection", "HalfParts", "FloatParts", "dmli_bounds", "dmli_pair_bounds",
           "dmli_bounds_symmetric_blocks", "auto_rank", "MIN_PRUNE_CHANNELS", "PATH_SLACK"]

# Allowance per path cell for the tanh approximation and the path sum's rounding (absolute).
PATH_SLACK = 1e-5
_UNIT_ROUNDOFF = 2.0 ** -24
_FIT_SAMPLES = 16384


# Below this part size the exhaustive DMLI is cheaper than bounds + exact pairs (measured:
# tools/benchmark_eval.py at 8 x 128, where the bounds of a 1/16 projection hold 74 % of the
# energy and leave most pairs open).
MIN_PRUNE_CHANNELS = 512


def auto_rank(channels):
    """Projection rank used when TEST.LOCAL.PRUNE_DIM is 0: an eighth of the part size, at most
    256 (256 for the backbone's 2048-channel parts), or 0 (no pruning) below
    MIN_PRUNE_CHANNELS channels. Measured at 8 x 2048 (tools/benchmark_eval.py, Market1501
    size): rank 256 doubles the bounds' GEMM over rank 128 but leaves a third of the exact
    neighbour pairs and two thirds of the second-level bounds, 10 % less time in all."""
    if channels < MIN_PRUNE_CHANNELS:
        return 0
    return int(min(256, channels // 8))


class PartProjection:
    """The principal subspace of a set of parts and every part's coordinates in it.

    parts (N, P, C) float32 -> ``coords`` (N, P, r) float32, ``residual`` (N, P) float32 norm
    of each part outside the subspace, ``sq_norm`` (N, P) float32 ||part||^2. The basis is the
    top-r eigenvectors of the uncentred second moment of (a sample of) the parts, so the
    projection captures as much of the parts' energy as an r-dim subspace can; ``energy`` is
    the captured fraction on that sample.
    """

    def __init__(self, parts, rank, seed=0):
        parts = np.asarray(parts, dtype=np.float32)
        n, p, c = parts.shape
        self.rank = int(max(1, min(int(rank), c)))
        flat = parts.reshape(-1, c)
        rng = np.random.default_rng(seed)
        sample = flat if flat.shape[0] <= _FIT_SAMPLES else \
            flat[np.sort(rng.choice(flat.shape[0], _FIT_SAMPLES, replace=False))]
        self.basis = _principal_basis(sample, self.rank, rng)                    # (C, r)
        self.coords = np.empty((n * p, self.rank), dtype=np.float32)
        sq = np.empty(n * p, dtype=np.float64)
        zsq = np.empty(n * p, dtype=np.float64)

        def project(s):                                  # float64 norms, chunk by chunk
            e = min(s + 8192, n * p)
            np.matmul(flat[s:e], self.basis, out=self.coords[s:e])
            _sq_norms_f64(flat[s:e], sq[s:e])
            _sq_norms_f64(self.coords[s:e], zsq[s:e])

        run_tasks([(s,) for s in range(0, n * p, 8192)], project)
        self.coords = self.coords.reshape(n, p, self.rank)
        self.energy = float(zsq.sum() / max(sq.sum(), 1e-30))
        self.sq_norm = sq.astype(np.float32).reshape(n, p)
        self.residual = np.sqrt(np.maximum(sq - zsq, 0.0)).astype(np.float32).reshape(n, p)
        # Rounding allowance per part in units of ||a - b||^2 / 4: the exact GEMM's worst case,
        # the projection's (r terms, a float32 basis orthonormal to ~ sqrt(C) u) and the
        # residual's (||a||^2 - ||z||^2 cancels when the residual is small).
        coef = ((c + self.rank + 16) * _UNIT_ROUNDOFF + 4.0 * np.sqrt(c) * _UNIT_ROUNDOFF)
        self.tau = (coef * sq / 2.0 / 4.0 + 1e-7).astype(np.float32).reshape(n, p)

    def part_terms(self, rows):
        """(shift_lo, shift_hi, cross) per part of the samples ``rows`` (a slice), flattened
        to (len * P,) float32, as dmli_numba.block_bounds takes them."""
        rho = self.residual[rows].reshape(-1).astype(np.float64)
        tau = self.tau[rows].reshape(-1).astype(np.float64)
        quarter = rho * rho / 4.0
        return ((quarter - tau).astype(np.float32), (quarter + tau).astype(np.float32),
                (rho / np.sqrt(2.0)).astype(np.float32))


def _sq_norms_f64(rows, out):
    """out (K,) float64 = the squared norms of rows (K, D) float32, summed in float64."""
    if dmli_numba.AVAILABLE:
        dmli_numba.sq_norms_f64(np.ascontiguousarray(rows), out)
    else:  # pragma: no cover - bounds need numba anyway
        wide = rows.astype(np.float64)
        out[:] = np.einsum("ij,ij->i", wide, wide)


def _part_norms_up(parts):
    """(N, P) float32 upper bounds of the part norms of parts (N, P, C) float32: float32 sums
    of C squares are within (C + 2) u of the real ones (any order), so inflated by twice that,
    square root rounded up, they bound the real norms from above."""
    grow = 1.0 + 2.0 * (parts.shape[2] + 2) * _UNIT_ROUNDOFF
    sq = np.einsum("ipc,ipc->ip", parts, parts).astype(np.float64)
    return _float32_up(np.sqrt(sq * grow))


def _float32_up(values):
    """float64 -> float32, rounded up (never below the value)."""
    out = np.asarray(values, dtype=np.float32)
    return np.where(out < values, np.nextafter(out, np.float32(np.inf)), out).astype(np.float32)


class HalfParts:
    """Parts rounded to float16 for tight second-level bounds of single pairs
    (dmli_pair_bounds): half the bytes of the float32 parts, so a pair costs half the memory
    traffic of its exact DMLI, and bounds about 2^-11 of the part norms wide instead of the
    projection's residual norms. Each part is first scaled by a power of two that brings its
    largest entry into [2^14, 2^15) (exact, and clear of float16's overflow), so any feature
    scale gets float16's full precision.

    parts (N, P, C) float32 -> ``bits`` (N, P, C) uint16 (float16 h, the part ~ scale * h);
    per part (N, P) float32: ``scale`` (the power of two), ``sq_norm`` (the float32 squared
    norms the exact kernel uses), ``err`` = ||a - scale * h||, ``norm`` = ||a||, ``norm16`` =
    ||scale * h|| (upper bounds); ``gamma``: the rounding allowance of a float32 dot product of
    C terms per unit of |a| |b| (worst case, any order).
    """

    # scales 2^-60 .. 2^60: their products stay inside float32's range
    MAX_SHIFT = 60

    def __init__(self, parts, sq_norm=None, chunk=512, num_threads=None):
        parts = np.ascontiguousarray(parts, dtype=np.float32)
        n, p, c = parts.shape
        self.bits = np.empty((n, p, c), dtype=np.uint16)
        self.scale = np.empty((n, p), dtype=np.float32)
        self.err = np.empty((n, p), dtype=np.float32)
        self.norm = np.empty((n, p), dtype=np.float32)
        self.norm16 = np.empty((n, p), dtype=np.float32)
        peaks = np.zeros(n, dtype=np.float32)

        def convert(s):
            e = min(s + chunk, n)
            a = parts[s:e]
            with np.errstate(invalid="ignore", over="ignore"):   # inf / NaN: refused below
                peak = np.abs(a).max(axis=2)
                peaks[s:e] = peak.max(axis=1)
                # peak < 2^expo, so a * 2^(15 - expo) stays below 2^15
                expo = np.frexp(np.where(np.isfinite(peak), peak, 1.0))[1]
                shift = np.clip(expo.astype(np.int64) - 15, -self.MAX_SHIFT, self.MAX_SHIFT)
                scale = np.exp2(shift).astype(np.float32)
                half = (a * np.exp2(-shift).astype(np.float32)[..., None]).astype(np.float16)
                self.bits[s:e] = half.view(np.uint16)
                self.scale[s:e] = scale
                dec = half.astype(np.float32) * scale[..., None]
                diff = a - dec              # exact in float32 (Sterbenz, or dec = 0)
            for out, v in ((self.err, diff), (self.norm, a), (self.norm16, dec)):
                out[s:e] = _part_norms_up(v)

        run_tasks([(s,) for s in range(0, n, chunk)], convert, num_threads)
        if not np.all(np.isfinite(peaks)):
            raise ValueError("Part features hold non-finite values (inf or NaN)")
        if peaks.size and peaks.max() >= 2.0 ** (15 + self.MAX_SHIFT):
            raise ValueError(f"Part features reach {peaks.max():.3g}, too large for the float16 "
                             f"bounds of TEST.LOCAL.PRUNE (at most 2^{15 + self.MAX_SHIFT}); "
                             f"normalise them or set TEST.LOCAL.PRUNE False")
        if not (np.all(np.isfinite(self.err)) and np.all(np.isfinite(self.norm))):
            raise ValueError("Part features too large for float32 norms (inf); normalise them "
                             "or set TEST.LOCAL.PRUNE False")
        self.sq_norm = np.einsum("imc,imc->im", parts, parts) if sq_norm is None else \
            np.ascontiguousarray(sq_norm, dtype=np.float32)
        self.gamma = np.float32(1.01 * (c + 2) * _UNIT_ROUNDOFF)


class FloatParts:
    """float32 parts read as they are, as the i side of dmli_pair_bounds, with the per-part
    terms HalfParts has (``data`` the parts, ``scale`` 1, ``err`` 0, ``norm`` = ``norm16``
    the rounded-up norms, ``sq_norm`` the exact kernel's squared norms), computed once."""

    def __init__(self, parts):
        self.data = np.ascontiguousarray(parts, dtype=np.float32)
        if self.data.ndim != 3:
            raise ValueError(f"parts must be (N, P, C), got {self.data.shape}")
        self.norm = self.norm16 = _part_norms_up(self.data)
        self.scale = np.ones(self.norm.shape, np.float32)
        self.err = np.zeros(self.norm.shape, np.float32)
        self.sq_norm = np.einsum("imc,imc->im", self.data, self.data)   # as the exact kernel's


def dmli_pair_bounds(parts16, i, j, aligned=True, num_threads=None, x_parts=None):
    """(lo, hi) (T,) float32 bounds of the DMLI that the exact pair kernel gives the pairs
    (i[t], j[t]) of the samples of ``parts16`` (HalfParts). ``x_parts``: float32 parts
    (M, P, C), or their FloatParts (made once for several calls), for the i side instead (i
    indexes them, j the HalfParts), read as they are: pairs sorted by i keep that side in
    cache, so it costs no memory traffic, saves a third of the conversions and has no rounding
    error."""
    _require_kernel()
    i = np.asarray(i, dtype=np.int64).ravel()
    j = np.asarray(j, dtype=np.int64).ravel()
    lo = np.empty(i.shape[0], dtype=np.float32)
    hi = np.empty(i.shape[0], dtype=np.float32)
    if i.shape[0] == 0:
        return lo, hi
    b = parts16
    if x_parts is None:
        kernel = dmli_numba.pair_bounds_f16
        x_data, x_scale, x_sq, x_err, x_norm, x_norm16 = (b.bits, b.scale, b.sq_norm, b.err,
                                                           b.norm, b.norm16)
    else:
        if not isinstance(x_parts, FloatParts):
            x_parts = FloatParts(x_parts) if x_parts.dtype == np.float32 else None
        if x_parts is None or x_parts.data.shape[1:] != b.bits.shape[1:]:
            raise ValueError(f"x_parts must be float32 parts (M, {b.bits.shape[1]}, "
                             f"{b.bits.shape[2]}) like the HalfParts' (or their FloatParts)")
        kernel = dmli_numba.pair_bounds_f32_f16
        x_data, x_scale, x_sq, x_err, x_norm, x_norm16 = (x_parts.data, x_parts.scale,
                                                           x_parts.sq_norm, x_parts.err,
                                                           x_parts.norm, x_parts.norm16)

    def call(a, c, lo_out, hi_out):
        kernel(x_data, b.bits, x_scale, b.scale, x_sq, b.sq_norm, x_err, b.err, x_norm, b.norm,
               x_norm16, b.norm16, b.gamma, a, c, bool(aligned), lo_out, hi_out)

    run_pair_kernel(i, j, call, [lo, hi], num_threads)
    m = b.bits.shape[1]
    slack = np.float32(PATH_SLACK * (2 * m))
    lo -= slack
    hi += slack
    return lo, hi


def _principal_basis(sample, rank, rng):
    """(C, rank) float32 orthonormal basis of the top principal directions (uncentred) of
    ``sample`` (S, C): exact eigenvectors for C <= 512, else a randomised range finder with
    two power iterations (any orthonormal basis gives valid bounds; a better one, tighter)."""
    c = sample.shape[1]
    x = sample.astype(np.float32)
    if c <= 512 or rank * 4 >= c:
        evals, evecs = np.linalg.eigh((x.T @ x).astype(np.float64))
        return np.ascontiguousarray(evecs[:, np.argsort(evals)[::-1][:rank]], dtype=np.float32)
    width = min(c, rank + 32)
    omega = rng.standard_normal((c, width)).astype(np.float32)
    q = np.linalg.qr((x.T @ (x @ omega)).astype(np.float64))[0]
    for _ in range(2):
        q32 = q.astype(np.float32)
        q = np.linalg.qr((x.T @ (x @ q32)).astype(np.float64))[0]
    _, _, vt = np.linalg.svd((x @ q.astype(np.float32)).astype(np.float64), full_matrices=False)
    basis = q @ vt.T[:, :rank]
    basis = np.linalg.qr(basis)[0]              # orthonormal to float64 rounding
    return np.ascontiguousarray(basis, dtype=np.float32)


class _BoundRunner:
    """Bounds of x-samples (rows) against y-samples (columns) block by block, the columns of
    ``col_block`` samples stored part-major as in dmli._BlockRunner."""

    def __init__(self, proj, x_rows, y_rows, aligned, col_block):
        self.m = self.n = proj.coords.shape[1]
        self.aligned = bool(aligned)
        self.col_block = int(col_block)
        xz = proj.coords[x_rows]
        yz = proj.coords[y_rows]
        self.xa = _augment(xz.reshape(-1, xz.shape[2]), True)
        ya = _augment(yz.reshape(-1, yz.shape[2]), False)
        self.x_terms = proj.part_terms(x_rows)
        y_terms = proj.part_terms(y_rows)
        perm = part_major_order(yz.shape[0], self.n, col_block)
        self.ya = ya[perm]
        self.y_terms = tuple(np.ascontiguousarray(v[perm]) for v in y_terms)
        self._buffers = ThreadBuffers()

    def block(self, s, e, t, u, lo_out, hi_out):
        """Bounds of x[s:e] against y[t:u] into lo_out / hi_out (e-s, u-t) float32."""
        m, n = self.m, self.n
        if t % self.col_block:
            raise ValueError(f"Column block start {t} is not a multiple of {self.col_block}")
        g = self._buffers.get((e - s) * m, (u - t) * n)
        np.matmul(self.xa[s * m:e * m], self.ya[t * n:u * n].T, out=g)
        xs = slice(s * m, e * m)
        ys = slice(t * n, u * n)
        dmli_numba.block_bounds(g, self.x_terms[0][xs], self.x_terms[1][xs],
                                self.x_terms[2][xs], self.y_terms[0][ys], self.y_terms[1][ys],
                                self.y_terms[2][ys], m, n, self.aligned, lo_out, hi_out)
        slack = np.float32((PATH_SLACK + dmli_numba.BOUND_COST_ERROR) * (m + n))
        lo_out -= slack
        hi_out += slack


def _require_kernel():
    if not dmli_numba.AVAILABLE:
        raise ValueError("DMLI bounds need the numba package (pip install numba); set "
                         "TEST.LOCAL.PRUNE False to evaluate without pruning")


def dmli_bounds(proj, x_rows, y_rows, aligned=True, num_threads=None):
    """(lo, hi) (M, N) float32 DMLI bounds of the samples x_rows (M) against y_rows (N) of
    ``proj`` (slices of its samples)."""
    _require_kernel()
    num_x = proj.coords[x_rows].shape[0]
    num_y = proj.coords[y_rows].shape[0]
    lo = np.empty((num_x, num_y), dtype=np.float32)
    hi = np.empty((num_x, num_y), dtype=np.float32)
    if num_x == 0 or num_y == 0:
        return lo, hi
    m = proj.coords.shape[1]
    bm, bn = _block_shape(m, m, num_x, num_y, None)
    runner = _BoundRunner(proj, x_rows, y_rows, aligned, bn)

    def work(s):
        e = min(s + bm, num_x)
        for t in range(0, num_y, bn):
            u = min(t + bn, num_y)
            blo = np.empty((e - s, u - t), np.float32)
            bhi = np.empty((e - s, u - t), np.float32)
            runner.block(s, e, t, u, blo, bhi)
            lo[s:e, t:u] = blo
            hi[s:e, t:u] = bhi

    run_tasks([(s,) for s in range(0, num_x, bm)], work, num_threads or default_num_threads())
    return lo, hi


def dmli_bounds_symmetric_blocks(proj, rows, consume, aligned=True, tile_size=2048,
                                 num_threads=None):
    """Bounds of the samples ``rows`` (a slice of ``proj``) against themselves, tile by tile on
    and above the diagonal: ``consume(s, e, t, u, lo, hi)`` (indices relative to ``rows``,
    t >= s) is called from worker threads; in tiles on the diagonal (t == s) only the entries
    with row <= column are meaningful (the others are NaN)."""
    _require_kernel()
    num = proj.coords[rows].shape[0]
    if num == 0:
        return
    m = proj.coords.shape[1]
    bm, bn = _block_shape(m, m, num, num, None)
    bn = max(bm, (bn // bm) * bm)
    tile = max(bn, (int(tile_size) // bn) * bn)
    runner = _BoundRunner(proj, rows, rows, aligned, bn)

    def work(s, t):
        e, u = min(s + tile, num), min(t + tile, num)
        lo = np.empty((e - s, u - t), dtype=np.float32)
        hi = np.empty((e - s, u - t), dtype=np.float32)
        for a in range(s, e, bm):
            b = min(a + bm, e)
            for c in range(t, u, bn):
                d = min(c + bn, u)
                if d <= a:
                    lo[a - s:b - s, c - t:d - t] = np.nan
                    hi[a - s:b - s, c - t:d - t] = np.nan
                else:
                    blo = np.empty((b - a, d - c), np.float32)
                    bhi = np.empty((b - a, d - c), np.float32)
                    runner.block(a, b, c, d, blo, bhi)
                    lo[a - s:b - s, c - t:d - t] = blo
                    hi[a - s:b - s, c - t:d - t] = bhi
        consume(s, e, t, u, lo, hi)

    tasks = [(s, t) for s in range(0, num, tile) for t in range(s, num, tile)]
    run_tasks(tasks, work, num_threads or default_num_threads())

