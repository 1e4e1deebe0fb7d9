"""Pillow's bilinear resize, crop, flip, pad, normalise and erasing in one compiled pass.

:func:`bilinear_coefficients` computes the filter taps exactly as Pillow's
``libImaging/Resample.c`` does (``precompute_coeffs`` then ``normalize_coeffs_8bpc``: the
same double-precision arithmetic, then 22-bit fixed point), and :func:`render_sample` runs
Pillow's two passes (horizontal into 8-bit rows, then vertical, each rounded and clipped as
Pillow's ``clip8``) over just the window the crop keeps. Its pixels are those of
``Image.resize((w, h), Image.BILINEAR)`` followed by the crop, bit for bit where Pillow runs
the horizontal pass first: Pillow before 13 always, Pillow 13 whenever no axis shrinks
(Market1501's 64x128 to 256x128 or 288x144; tests/test_data_pipeline.py checks it). Where
an axis shrinks Pillow 13 may run the vertical pass first and a pixel may then differ by
one 8-bit level, so :class:`~.fused.FusedTransform` lets Pillow do shrinking resizes. In
the same pass it mirrors the window, shifts it by the padding offset, normalises into CHW
float32 with :class:`Normalize`'s float32 operations (``(float32(p) - mean) / std``,
bit-identical) and fills the erased rectangle. It releases the GIL, so loader threads
decode and render side by side.

Compiled with numba on first use and cached in ``__pycache__``; ``AVAILABLE`` is False
without numba (the loaders then apply the transforms one by one).
"""
import math
import threading
from typing import Dict, Tuple

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - the loaders fall back to the plain transforms
    numba = None

__all__ = ["AVAILABLE", "PRECISION_BITS", "bilinear_coefficients", "render_sample"]

AVAILABLE = numba is not None

# Pillow's fixed point for 8-bit images: 32 bits less 8 for the pixel and 2 for overshoot.
PRECISION_BITS = 32 - 8 - 2

_COEFFICIENTS: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
_COEFFICIENTS_LOCK = threading.Lock()
_MAX_CACHED_SIZES = 4096


def _bilinear_filter(x: float) -> float:
    if x < 0.0:
        x = -x
    if x < 1.0:
        return 1.0 - x
    return 0.0


def _fixed_point(k: float) -> int:
    """Pillow's ``normalize_coeffs_8bpc`` for one tap (C's (int) truncates toward zero)."""
    if k < 0:
        return int(-0.5 + k * (1 << PRECISION_BITS))
    return int(0.5 + k * (1 << PRECISION_BITS))


def _compute_coefficients(in_size: int, out_size: int):
    scale = float(in_size) / out_size  # (double)(in1 - in0) / outSize with in0 = 0
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1  # Pillow's buffer; trimmed to the taps used below
    bounds = np.zeros((out_size, 2), np.int32)
    taps = np.zeros((out_size, ksize), np.int32)
    ss = 1.0 / filterscale
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [_bilinear_filter((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in weights:
            total += w
        if total != 0.0:
            weights = [w / total for w in weights]
        bounds[xx] = (xmin, xmax)
        taps[xx, :xmax] = [_fixed_point(w) for w in weights]
    taps = np.ascontiguousarray(taps[:, :max(int(bounds[:, 1].max()), 1)])
    ksize = taps.shape[1]
    # Source pixel of every tap, kept inside the image where the tap is 0.
    index = np.minimum(bounds[:, :1] + np.arange(ksize, dtype=np.int32)[None, :], in_size - 1)
    return bounds, taps, np.ascontiguousarray(index, dtype=np.int32)


def bilinear_coefficients(in_size: int, out_size: int
                          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's bilinear taps for resizing one axis from ``in_size`` to ``out_size`` pixels.

    Returns ``(bounds, taps, index)``: bounds (out_size, 2) int32 = (first source pixel,
    number of taps) per output pixel; taps (out_size, ksize) int32 in ``PRECISION_BITS``
    fixed point (0 past the count; ksize the most taps any output pixel uses); index
    (out_size, ksize) int32, the source pixel of
    each tap (clamped into the image where the tap is 0). Cached per size pair (read-only
    arrays).
    """
    key = (int(in_size), int(out_size))
    if key[0] < 1 or key[1] < 1:
        raise ValueError(f"Cannot resize an axis of {key[0]} pixels to {key[1]}: both sizes "
                         "must be positive.")
    found = _COEFFICIENTS.get(key)
    if found is None:
        found = _compute_coefficients(*key)
        for array in found:
            array.setflags(write=False)
        with _COEFFICIENTS_LOCK:
            if len(_COEFFICIENTS) >= _MAX_CACHED_SIZES:
                _COEFFICIENTS.clear()
            _COEFFICIENTS[key] = found
    return found


def _render_sample(src, x_index, x_taps, y_bounds, y_taps, y0, flip, dy, dx, fill_value,
                   mean, std, erase, erase_value, out):
    """Write one sample into ``out`` (3, H, W) float32; see :func:`render_sample`.

    x_index / x_taps: (W, ksize) int32 source column and tap of each window column (taps
    past a column's count are 0 at a valid index); y_bounds / y_taps: Pillow's bounds and
    taps of the big image's rows. Sums stay in int32 as in Pillow. The horizontal pass runs
    on a column-major copy of the source rows, so that both passes' inner loops are
    contiguous and vectorise.
    """
    out_h = out.shape[1]
    out_w = out.shape[2]
    in_w = src.shape[1]
    ksize_x = x_taps.shape[1]
    half = np.int32(1 << (PRECISION_BITS - 1))
    shift = np.int32(PRECISION_BITS)
    row_first = y_bounds[y0, 0]
    row_last = row_first
    for yy in range(y0, y0 + out_h):
        row_last = max(row_last, y_bounds[yy, 0] + y_bounds[yy, 1])
    rows = row_last - row_first
    # Source rows the window reads, as int32 columns: columns[c, x, r].
    columns = np.empty((3, in_w, rows), np.int32)
    for r in range(rows):
        for x in range(in_w):
            for c in range(3):
                columns[c, x, r] = src[row_first + r, x, c]
    # Horizontal pass (Pillow's first) for the window's columns, rounded and clipped.
    horizontal = np.empty((3, rows, out_w), np.int32)
    acc_column = np.empty(rows, np.int32)
    for c in range(3):
        for j in range(out_w):
            for r in range(rows):
                acc_column[r] = half
            for t in range(ksize_x):
                k = x_taps[j, t]
                column = columns[c, x_index[j, t]]
                for r in range(rows):
                    acc_column[r] = np.int32(acc_column[r] + np.int32(column[r] * k))
            for r in range(rows):
                horizontal[c, r, j] = min(max(acc_column[r] >> shift, 0), 255)
    # Vertical pass row by row, rounded and clipped, normalised, mirrored and shifted.
    acc_row = np.empty(out_w, np.int32)
    values = np.empty(out_w, np.float32)
    j_first = min(max(0, -dx), out_w)
    j_last = max(min(out_w, out_w - dx), j_first)
    for c in range(3):
        m = mean[c]
        s = std[c]
        fill = (np.float32(fill_value) - m) / s
        for i in range(out_h):
            row = out[c, i]
            wi = i + dy
            if wi < 0 or wi >= out_h:
                for j in range(out_w):
                    row[j] = fill
                continue
            yy = y0 + wi
            ymin = y_bounds[yy, 0] - row_first
            for j in range(out_w):
                acc_row[j] = half
            for t in range(y_bounds[yy, 1]):
                k = y_taps[yy, t]
                line = horizontal[c, ymin + t]
                for j in range(out_w):
                    acc_row[j] = np.int32(acc_row[j] + np.int32(line[j] * k))
            for j in range(out_w):
                values[j] = (np.float32(min(max(acc_row[j] >> shift, 0), 255)) - m) / s
            for j in range(j_first):
                row[j] = fill
            if flip:
                for j in range(j_first, j_last):
                    row[j] = values[out_w - 1 - j - dx]
            else:
                for j in range(j_first, j_last):
                    row[j] = values[j + dx]
            for j in range(j_last, out_w):
                row[j] = fill
    ey, ex, eh, ew = erase[0], erase[1], erase[2], erase[3]
    for c in range(3):
        for i in range(ey, ey + eh):
            for j in range(ex, ex + ew):
                out[c, i, j] = erase_value[c]


if AVAILABLE:
    _render_sample_compiled = numba.njit(nogil=True, cache=True)(_render_sample)
else:  # pragma: no cover
    _render_sample_compiled = None


def render_sample(src: np.ndarray, big_size: Tuple[int, int], corner: Tuple[int, int],
                  flip: bool, shift: Tuple[int, int], fill: int, mean: np.ndarray,
                  std: np.ndarray, erase: np.ndarray, erase_value: np.ndarray,
                  out: np.ndarray) -> None:
    """One sample, from the decoded image to the normalised CHW tensor, into ``out``.

    src: (H_in, W_in, 3) uint8 RGB. The image is resized (Pillow's bilinear) to
    ``big_size`` = (big_h, big_w); the window of out's size (H, W) at ``corner`` = (y0, x0)
    is kept; mirrored left-right if ``flip``; then output pixel (i, j) takes window pixel
    (i + dy, j + dx), ``shift`` = (dy, dx), or the 8-bit value ``fill`` where that falls
    outside (pad + crop); each value v of channel c becomes ``(float32(v) - mean[c]) /
    std[c]`` (mean, std: (3,) float32); finally the rectangle ``erase`` = (y, x, h, w)
    int32 (h = 0: none) is set to ``erase_value`` (3,) float32. out: (3, H, W) float32,
    C-contiguous, written in place.
    """
    if out.ndim != 3 or out.shape[0] != 3 or out.dtype != np.float32 \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"render_sample writes a writable C-contiguous float32 (3, H, W) "
                         f"array, got {out.dtype} {out.shape}.")
    if _render_sample_compiled is None:  # pragma: no cover
        raise RuntimeError("render_sample needs numba: pip install numba")
    big_h, big_w = int(big_size[0]), int(big_size[1])
    out_h, out_w = out.shape[1], out.shape[2]
    y0, x0 = int(corner[0]), int(corner[1])
    if not (0 <= y0 <= big_h - out_h and 0 <= x0 <= big_w - out_w):
        raise ValueError(f"A {out_h}x{out_w} window at {(y0, x0)} does not fit in the "
                         f"resized {big_h}x{big_w} image.")
    if src.ndim != 3 or src.shape[2] != 3 or src.dtype != np.uint8:
        raise ValueError(f"render_sample needs an (H, W, 3) uint8 image, got {src.shape} "
                         f"{src.dtype}.")
    _, x_taps, x_index = bilinear_coefficients(src.shape[1], big_w)
    y_bounds, y_taps, _ = bilinear_coefficients(src.shape[0], big_h)
    _render_sample_compiled(_read_only(src, np.uint8, 3), x_index[x0:x0 + out_w],
                            x_taps[x0:x0 + out_w], y_bounds, y_taps, y0, bool(flip),
                            int(shift[0]), int(shift[1]), int(fill),
                            _read_only(mean, np.float32, 1), _read_only(std, np.float32, 1),
                            _read_only(erase, np.int32, 1), _read_only(erase_value, np.float32, 1),
                            out)


def _read_only(array, dtype, ndim) -> np.ndarray:
    """A read-only C-contiguous view (a copy only when the layout differs), so that the
    kernel is compiled for one signature whatever flags the caller's arrays have."""
    view = np.ascontiguousarray(array, dtype=dtype).view()
    if view.ndim != ndim:
        raise ValueError(f"render_sample expected a {ndim}-d array, got shape {view.shape}.")
    view.setflags(write=False)
    return view
