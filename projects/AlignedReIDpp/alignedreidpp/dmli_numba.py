"""Fused DMLI block kernel compiled with numba (optional: ``AVAILABLE`` is False without numba).

``block_paths(g, m, n, aligned, out)`` takes one GEMM block in *part-major* column order:
g (bx*m, n*by) float32 with g[a*m + i, j*by + b] = ||x_a,i - y_b,j||^2 / 4, and writes
out (bx, by) float32: per pair (a, b) the shortest right/down path (aligned) or the diagonal sum
(not aligned) through d_ij = tanh(sqrt(max(g, 0))). One pass over the block: clamp, square root,
tanh per row of the block (in cache), then the path recursion, both vectorised over the by pairs
(the part-major order makes them contiguous), the GIL released so the caller's threads run
blocks side by side. ``pair_paths`` does the same for a list of pairs, each from its own m x n
dot products. Compiled on first use and cached in __pycache__.

tanh(d) = (1 - t) / (1 + t) with t = exp(-2d) = 2^-y, y = 2d / ln 2 (clamped at 30, where
tanh is 1 in float32): 2^-y = 2^-k * 2^-f (k = floor(y), f in [0, 1)), 2^-f from a degree-6
polynomial (a Chebyshev least-squares fit of 2^-f on [0, 1], max error 1.4e-9), so the loop
needs no libm call and vectorises. Absolute error of d_ij against float64 tanh: about 1e-7.
"""
import math

import numpy as np

try:
    import numba
    from llvmlite import ir as _llvm_ir
    from numba.extending import intrinsic as _intrinsic
except ImportError:  # pragma: no cover - the numpy path remains
    numba = None

__all__ = ["AVAILABLE", "BOUND_COST_ERROR", "block_bounds", "block_paths", "bound_tanh_sqrt",
           "pair_bounds_f16", "pair_bounds_f32_f16", "pair_paths", "sq_norms_f64", "tanh_sqrt"]

AVAILABLE = numba is not None

if AVAILABLE:
    @_intrinsic
    def _half_bits_as_float32(typingctx, bits):
        """The float16 whose bits are the uint16 ``bits``, widened to float32 (exactly): an
        LLVM bitcast and fpext, one vcvtph2ps per vector on x86 CPUs with F16C (every AVX2
        one)."""
        def codegen(context, builder, signature, args):
            return builder.fpext(builder.bitcast(args[0], _llvm_ir.HalfType()),
                                 _llvm_ir.FloatType())
        return numba.types.float32(numba.types.uint16), codegen

    @numba.njit(inline="always")
    def _f16(h):
        """float16 bits (uint16) -> float32, exactly."""
        return _half_bits_as_float32(h)

_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (np.float32(v) for v in (
    0.999999999, -0.693147047, 0.240224355, -0.0554910353, 0.00958005845, -0.00127571622,
    0.000109387524))
_TWO_OVER_LN2 = np.float32(2.0 / math.log(2.0))
_Y_MAX = np.float32(30.0)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
_TWO = np.float32(2.0)
# Channels per pass of the pair kernels: 16 part rows of 512 float32 (32 KB) stay in L1.
_K_CHUNK = 512


def _cost(v):
    """tanh(sqrt(max(v, 0))) for a float32 scalar v."""
    d = np.sqrt(max(v, _ZERO))
    y = min(d * _TWO_OVER_LN2, _Y_MAX)
    k = np.int32(y)
    f = y - np.float32(k)
    p = _P0 + f * (_P1 + f * (_P2 + f * (_P3 + f * (_P4 + f * (_P5 + f * _P6)))))
    t = p * _TWO ** np.float32(-k)
    return (_ONE - t) / (_ONE + t)


# tanh(x) ~ x (135135 + 17325 x^2 + 378 x^4 + x^6) / (135135 + 62370 x^2 + 3150 x^4 + 28 x^6)
# (Lambert's continued fraction, cut after seven terms) for x <= 4.97, clamped there: within
# 9.6e-5 of tanh for every x >= 0 (largest at the clamp, 1 - tanh(4.97)); with float32
# evaluation and the exact kernels' own error (_cost, ~2e-7) it stays within BOUND_COST_ERROR
# of what they compute (tested on a dense grid).
_R_N0, _R_N1, _R_N2 = np.float32(135135.0), np.float32(17325.0), np.float32(378.0)
_R_D0, _R_D1, _R_D2, _R_D3 = (np.float32(135135.0), np.float32(62370.0), np.float32(3150.0),
                              np.float32(28.0))
_R_X_MAX = np.float32(4.97)
BOUND_COST_ERROR = 1.5e-4


def _bound_cost(v):
    """tanh(sqrt(max(v, 0))) within BOUND_COST_ERROR of ``_cost``, for the bounds kernel: a
    rational function, about two thirds of its operations (no exponential)."""
    x = min(np.sqrt(max(v, _ZERO)), _R_X_MAX)
    x2 = x * x
    num = x * (_R_N0 + x2 * (_R_N1 + x2 * (_R_N2 + x2)))
    den = _R_D0 + x2 * (_R_D1 + x2 * (_R_D2 + x2 * _R_D3))
    return min(num / den, _ONE)


def _bound_tanh_sqrt(v, out):
    """Element-wise _bound_cost over 1-D float32 arrays (for tests)."""
    for idx in range(v.shape[0]):
        out[idx] = _bound_cost(v[idx])


def _sq_norms_f64(rows, out):
    """out (K,) float64 = sum of squares of each row of rows (K, D) float32, in float64."""
    for r in range(rows.shape[0]):
        acc = 0.0
        src = rows[r]
        for c in range(src.shape[0]):
            v = np.float64(src[c])
            acc += v * v
        out[r] = acc


def _tanh_sqrt(v, out):
    """Element-wise _cost over 1-D float32 arrays (for tests)."""
    for idx in range(v.shape[0]):
        out[idx] = _cost(v[idx])


def _path_rows(cost, row, by, n, first):
    """One row of the path recursion over n cells, vectorised over the by pairs: row (n*by,)
    holds the best path lengths of the previous row (overwritten); cost (n*by,) this row's."""
    if first:
        for b in range(by):
            row[b] = cost[b]
        for j in range(1, n):
            cur, prev = row[j * by:(j + 1) * by], row[(j - 1) * by:j * by]
            cc = cost[j * by:(j + 1) * by]
            for b in range(by):
                cur[b] = prev[b] + cc[b]
    else:
        for b in range(by):
            row[b] += cost[b]
        for j in range(1, n):
            cur, prev = row[j * by:(j + 1) * by], row[(j - 1) * by:j * by]
            cc = cost[j * by:(j + 1) * by]
            for b in range(by):
                cur[b] = min(cur[b], prev[b]) + cc[b]


def _block_paths(g, m, n, aligned, out):
    bx, by = out.shape
    if not aligned:
        for a in range(bx):
            for b in range(by):
                out[a, b] = _ZERO
            for i in range(m):
                src = g[a * m + i]
                base = i * by
                for b in range(by):
                    out[a, b] += _cost(src[base + b])
        return
    # Per row i of a sample: the costs of all n*by cells first (one vectorised pass), then the
    # recursion over j, each step vectorised over the by pairs (1-D slices: no aliasing).
    row = np.empty(n * by, dtype=np.float32)
    cost = np.empty(n * by, dtype=np.float32)
    for a in range(bx):
        for i in range(m):
            src = g[a * m + i]
            for jb in range(n * by):
                cost[jb] = _cost(src[jb])
            _path_rows(cost, row, by, n, i == 0)
        last = row[(n - 1) * by:]
        for b in range(by):
            out[a, b] = last[b]


def _block_bounds(g, x_shift_lo, x_shift_hi, x_cross, y_shift_lo, y_shift_hi, y_cross, m, n,
                  aligned, lo_out, hi_out):
    """Lower and upper DMLI bounds of one block of projected part distances.

    g (bx*m, n*by) float32 in the part-major column order of ``_block_paths``: ||P a - P b||^2 / 4
    of the projected parts. Per part of x (bx*m,) and of y (n*by,, part-major): shift_lo =
    rho^2 / 4 - tau, shift_hi = rho^2 / 4 + tau, cross = rho / sqrt(2), where rho is the norm
    of the part's residual outside the projection and tau a rounding allowance. Then
        ||a - b||^2 / 4 >= g + x_shift_lo + y_shift_lo - x_cross * y_cross   (lower cell)
        ||a - b||^2 / 4 <= g + x_shift_hi + y_shift_hi + x_cross * y_cross   (upper cell)
    and the path (or diagonal sum) through tanh(sqrt(.)) of each (``_bound_cost``: the caller
    widens by BOUND_COST_ERROR per path cell) gives lo_out / hi_out (bx, by).
    """
    bx, by = lo_out.shape
    row_lo = np.empty(n * by, dtype=np.float32)
    row_hi = np.empty(n * by, dtype=np.float32)
    cost_lo = np.empty(n * by, dtype=np.float32)
    cost_hi = np.empty(n * by, dtype=np.float32)
    for a in range(bx):
        if not aligned:
            for b in range(by):
                lo_out[a, b] = _ZERO
                hi_out[a, b] = _ZERO
        for i in range(m):
            r = a * m + i
            src = g[r]
            slo, shi, cr = x_shift_lo[r], x_shift_hi[r], x_cross[r]
            for jb in range(n * by):
                cross = cr * y_cross[jb]
                cost_lo[jb] = _bound_cost(src[jb] + slo + y_shift_lo[jb] - cross)
                cost_hi[jb] = _bound_cost(src[jb] + shi + y_shift_hi[jb] + cross)
            if not aligned:
                base = i * by
                for b in range(by):
                    lo_out[a, b] += cost_lo[base + b]
                    hi_out[a, b] += cost_hi[base + b]
                continue
            _path_rows(cost_lo, row_lo, by, n, i == 0)
            _path_rows(cost_hi, row_hi, by, n, i == 0)
        if aligned:
            for b in range(by):
                lo_out[a, b] = row_lo[(n - 1) * by + b]
                hi_out[a, b] = row_hi[(n - 1) * by + b]


def _make_part_dots(load_x, load_y=None):
    """A kernel cells (m*n,) = the m x n part dot products of x[a] (m, C) and y[b] (n, C),
    each element read through ``load_x`` / ``load_y`` (float32 as is, or float16 bits
    widened; ``load_y`` defaults to ``load_x``)."""
    load_y = load_x if load_y is None else load_y

    def part_dots(x, y, a, b, cells):
        m, c, n = x.shape[1], x.shape[2], y.shape[1]
        m2, n4 = m - m % 2, n - n % 4
        for e in range(m * n):
            cells[e] = _ZERO
        # 2 x 4 blocks of part dot products: 8 accumulators per pass (6 loads for 8
        # multiply-adds, in registers on AVX2 as on AVX-512), over chunks of C whose 16 part
        # rows fit in L1
        for k0 in range(0, c, _K_CHUNK):
            k1 = min(k0 + _K_CHUNK, c)
            for p in range(0, m2, 2):
                # slices, so that the loop index starts at 0 (no wrap-around test: vectorised)
                x0, x1 = x[a, p, k0:k1], x[a, p + 1, k0:k1]
                for q in range(0, n4, 4):
                    y0, y1, y2, y3 = (y[b, q, k0:k1], y[b, q + 1, k0:k1], y[b, q + 2, k0:k1],
                                      y[b, q + 3, k0:k1])
                    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = _ZERO
                    for k in range(k1 - k0):
                        u0, u1 = load_x(x0[k]), load_x(x1[k])
                        v0, v1, v2, v3 = (load_y(y0[k]), load_y(y1[k]), load_y(y2[k]),
                                          load_y(y3[k]))
                        s00 += u0 * v0
                        s01 += u0 * v1
                        s02 += u0 * v2
                        s03 += u0 * v3
                        s10 += u1 * v0
                        s11 += u1 * v1
                        s12 += u1 * v2
                        s13 += u1 * v3
                    r0, r1 = p * n + q, (p + 1) * n + q
                    cells[r0] += s00
                    cells[r0 + 1] += s01
                    cells[r0 + 2] += s02
                    cells[r0 + 3] += s03
                    cells[r1] += s10
                    cells[r1 + 1] += s11
                    cells[r1 + 2] += s12
                    cells[r1 + 3] += s13
        for p in range(m):                  # the rest: rows past m2, columns past n4
            q0 = 0 if p >= m2 else n4
            xp = x[a, p]
            for q in range(q0, n):
                yq = y[b, q]
                acc = _ZERO
                for k in range(c):
                    acc += load_x(xp[k]) * load_y(yq[k])
                cells[p * n + q] = acc
    return part_dots


def _as_float32(v):
    return v


def _path_of_costs(cost, row, m, n, aligned):
    """The shortest right/down path through the m x n costs (row-major), or their diagonal
    sum when not aligned; row (n,) is scratch."""
    if not aligned:
        total = _ZERO
        for p in range(min(m, n)):
            total += cost[p * n + p]
        return total
    row[0] = cost[0]
    for q in range(1, n):
        row[q] = row[q - 1] + cost[q]
    for p in range(1, m):
        row[0] += cost[p * n]
        for q in range(1, n):
            row[q] = min(row[q], row[q - 1]) + cost[p * n + q]
    return row[n - 1]


def _pair_paths(x, y, x_sq, y_sq, i, j, aligned, out):
    """DMLI of the pairs (x[i[t]], y[j[t]]): x (M, m, C), y (N, n, C) float32, x_sq (M, m) /
    y_sq (N, n) squared part norms, i, j (T,) int64 -> out (T,) float32.

    Per pair: the m x n part dot products (four parts of y per pass over two parts of x, each
    reduction vectorised over C), then the costs in one vectorised pass, then the path."""
    m, n = x.shape[1], y.shape[1]
    cells = np.empty(m * n, dtype=np.float32)
    cost = np.empty(m * n, dtype=np.float32)
    row = np.empty(n, dtype=np.float32)
    quarter = np.float32(0.25)
    for t in range(i.shape[0]):
        a, b = i[t], j[t]
        _dots_float32(x, y, a, b, cells)
        for p in range(m):
            for q in range(n):
                cells[p * n + q] = (x_sq[a, p] + y_sq[b, q] - _TWO * cells[p * n + q]) * quarter
        for e in range(m * n):
            cost[e] = _cost(cells[e])
        out[t] = _path_of_costs(cost, row, m, n, aligned)


# Absolute allowance per cell for the scaling of float16 dot products into float32 underflowing
# (only for parts whose entries are all below about 1e-19).
_TINY = np.float32(1e-36)


def _pair_bounds_half(dots, x16, y16, x_scale, y_scale, x_sq, y_sq, x_err, y_err, x_norm, y_norm,
                     x_norm16, y_norm16, gamma, i, j, aligned, lo_out, hi_out):
    """Two-sided bounds of the DMLI that ``pair_paths`` computes for the pairs
    (x[i[t]], y[j[t]]), from float16 copies of the parts (half the bytes of float32).

    dots: the part dot-product kernel for the two sides' types (``_make_part_dots``);
    x16 (M, m, C) / y16 (N, n, C) uint16: the bits of float16 parts h with a~ = scale * h the
    part's approximation (x_scale / y_scale (.., m) float32 powers of two; in
    ``pair_bounds_f32_f16`` x16 holds the float32 parts themselves, scale 1, err 0);
    x_sq / y_sq: the float32 squared part norms the exact kernel uses; x_err / y_err: norms
    of (part - a~), x_norm / y_norm: part norms, x_norm16 / y_norm16: norms of a~ (all
    (.., m) float32, rounded up); gamma: rounding allowance per unit of |a| |b| of a float32
    dot product of C terms. Per cell, with g = scale_a scale_b times the float32 dot product
    of the float16 parts,
        |<a, b> - g| <= e_a |b| + |a~| e_b + gamma (|a| |b| + |a~| |b~|) =: D,
    so the exact kernel's cell ||a - b||^2 / 4 = (sq_a + sq_b - 2 <a, b>) / 4 lies within
    (sq_a + sq_b - 2 g -/+ 2 D') / 4 with D' = D + gamma (sq_a + sq_b) for the few additions of
    either kernel, and the paths through tanh(sqrt(.)) of the two give lo_out / hi_out (T,)
    (widened by ``PATH_SLACK`` by the caller)."""
    m, n = x16.shape[1], y16.shape[1]
    cells = np.empty(m * n, dtype=np.float32)
    cost_lo = np.empty(m * n, dtype=np.float32)
    cost_hi = np.empty(m * n, dtype=np.float32)
    row = np.empty(n, dtype=np.float32)
    quarter = np.float32(0.25)
    for t in range(i.shape[0]):
        a, b = i[t], j[t]
        dots(x16, y16, a, b, cells)
        for p in range(m):
            for q in range(n):
                e = p * n + q
                dot = cells[e] * (x_scale[a, p] * y_scale[b, q])
                dev = (x_err[a, p] * y_norm[b, q] + x_norm16[a, p] * y_err[b, q]
                       + gamma * (x_norm[a, p] * y_norm[b, q] + x_norm16[a, p] * y_norm16[b, q]
                                  + x_sq[a, p] + y_sq[b, q]) + _TINY)
                centre = x_sq[a, p] + y_sq[b, q] - _TWO * dot
                cost_lo[e] = _cost((centre - _TWO * dev) * quarter)
                cost_hi[e] = _cost((centre + _TWO * dev) * quarter)
        lo_out[t] = _path_of_costs(cost_lo, row, m, n, aligned)
        hi_out[t] = _path_of_costs(cost_hi, row, m, n, aligned)


def _pair_bounds_f16(x16, y16, x_scale, y_scale, x_sq, y_sq, x_err, y_err, x_norm, y_norm,
                     x_norm16, y_norm16, gamma, i, j, aligned, lo_out, hi_out):
    """_pair_bounds_half with both sides float16 (uint16 bits)."""
    _pair_bounds_half(_dots_f16, x16, y16, x_scale, y_scale, x_sq, y_sq, x_err, y_err, x_norm,
                      y_norm, x_norm16, y_norm16, gamma, i, j, aligned, lo_out, hi_out)


def _pair_bounds_f32_f16(x32, y16, x_scale, y_scale, x_sq, y_sq, x_err, y_err, x_norm, y_norm,
                         x_norm16, y_norm16, gamma, i, j, aligned, lo_out, hi_out):
    """_pair_bounds_half with the x side the float32 parts (x_scale 1, x_err 0, x_norm16 =
    x_norm): a third fewer conversions per multiply-add, and e_a = 0."""
    _pair_bounds_half(_dots_f32_f16, x32, y16, x_scale, y_scale, x_sq, y_sq, x_err, y_err,
                      x_norm, y_norm, x_norm16, y_norm16, gamma, i, j, aligned, lo_out, hi_out)


if AVAILABLE:
    _jit = dict(nogil=True, cache=True, fastmath=True, error_model="numpy")
    _cost = numba.njit(inline="always", fastmath=True, error_model="numpy")(_cost)
    _bound_cost = numba.njit(inline="always", fastmath=True, error_model="numpy")(_bound_cost)
    block_paths = numba.njit(**_jit)(_block_paths)
    tanh_sqrt = numba.njit(**_jit)(_tanh_sqrt)
    bound_tanh_sqrt = numba.njit(**_jit)(_bound_tanh_sqrt)
    sq_norms_f64 = numba.njit(**_jit)(_sq_norms_f64)
    _inline = dict(inline="always", fastmath=True, error_model="numpy")
    _as_float32 = numba.njit(**_inline)(_as_float32)
    _dots_float32 = numba.njit(**_inline)(_make_part_dots(_as_float32))
    _dots_f16 = numba.njit(**_inline)(_make_part_dots(_f16))
    _path_of_costs = numba.njit(**_inline)(_path_of_costs)
    pair_paths = numba.njit(**_jit)(_pair_paths)
    _dots_f32_f16 = numba.njit(**_inline)(_make_part_dots(_as_float32, _f16))
    _pair_bounds_half = numba.njit(**_inline)(_pair_bounds_half)
    pair_bounds_f16 = numba.njit(**_jit)(_pair_bounds_f16)
    pair_bounds_f32_f16 = numba.njit(**_jit)(_pair_bounds_f32_f16)
    _path_rows = numba.njit(inline="always", fastmath=True, error_model="numpy")(_path_rows)
    block_bounds = numba.njit(**_jit)(_block_bounds)
else:  # pragma: no cover
    block_bounds = None
    block_paths = None
    tanh_sqrt = None
    bound_tanh_sqrt = None
    sq_norms_f64 = None
    pair_paths = None
    pair_bounds_f16 = pair_bounds_f32_f16 = None
