"""NumPy reference for tile blending: the contract native (C++/CUDA) kernels must match.

Native kernels must reproduce every function here bit for bit, except where a step calls ``cos``
(the ``cosine`` and ``hann*`` windows), where the float64 ``cos`` of another libm may differ in
its last bit: there the float32 results must agree within 1e-6 absolute.

Layouts and dtypes
    Images, tiles and the canvas are planar: ``(C, H, W)`` (a model's NCHW output without N),
    C-contiguous float32. Weights and the weight sum are ``(H, W)`` float32. The tiler works at
    output resolution: a tile's weight is ``tile_weight(h * scale, w * scale, overlaps * scale)``.

Windows (``window_1d``), computed in float64 and rounded to float32 once at the end
    For pixel ``i`` of ``n`` (sample at the pixel centre, ``i + 0.5``) and the ramp length ``R``
    of each side whose overlap is > 0 (sides with overlap 0 touch the image border: flat)::

        u = min(1, (i + 0.5) / R_before, (n - i - 0.5) / R_after)     # absent sides skipped
        f = u                              # shape "linear"
        f = 0.5 - 0.5 * cos(pi * u)        # shape "cosine" (pi = numpy.pi, float64)
        w = f * f * ... * f                # ``power`` factors, multiplied left to right
        w = max(w, WEIGHT_FLOOR)           # then rounded to float32 (round to nearest even)

    ``R`` is the side's overlap for the overlap kinds ("linear", "cosine") and ``n / 2`` for the
    whole-tile kinds ("hann", "hann2", "hann4", "hann8": a Hann window falling off from the tile
    centre, raised to the power in its name). The floor keeps every weight a normal float32 > 0,
    so no pixel is ever uncovered and flush-to-zero hardware gives the same result.

2-D weight (``tile_weight``)
    ``wt[y, x] = max(wy[y] * wx[x], WEIGHT_FLOOR)``: one float32 multiply (correctly rounded).

Accumulation (``accumulate``), tiles in plan order (row-major: top to bottom, left to right)
    ``canvas[c, y0+j, x0+i] += tile_out[c, j, i] * wt[j, i]`` and ``weight_sum[y0+j, x0+i] +=
    wt[j, i]``, both in float32; the product is rounded to float32 before the add (no fused
    multiply-add: CUDA must use ``__fmul_rn``/``__fadd_rn``). Canvas and sum start at +0.0.

Normalisation (``normalize``): ``canvas / weight_sum`` per pixel, one IEEE float32 division.

Integer conversion (``to_uint``), elementwise on float32
    ``v = fmin(fmax(x, 0), 1)`` (C99 semantics: NaN becomes 0), ``v = v * 255`` (or 65535) in
    float32, then round half to even (``rintf``; ``__float2uint_rn`` in CUDA) to uint8/uint16.

Tile extraction (``extract_tile``): reads ``image[..., y0:y0+h, x0:x0+w]``; indices outside
    ``[0, n)`` map by "reflect" (mirror without repeating the edge pixel: period ``2(n-1)``,
    ``j = i mod 2(n-1)``, ``j = 2(n-1) - j`` when ``j >= n``; ``n == 1`` gives 0) or "replicate"
    (``clamp(i, 0, n-1)``).
"""

from dataclasses import dataclass

import numpy as np

from edgesr.errors import TilingError

WEIGHT_FLOOR = 2.0 ** -100
PAD_MODES = ("reflect", "replicate")


@dataclass(frozen=True)
class _Kind:
    shape: str  # "linear" or "cosine"
    whole_tile: bool  # ramp over half the tile (True) or over the overlap (False)
    power: int


_KINDS = {
    "linear": _Kind("linear", False, 1),
    "cosine": _Kind("cosine", False, 1),
    "hann": _Kind("cosine", True, 1),
    "hann2": _Kind("cosine", True, 2),
    "hann4": _Kind("cosine", True, 4),
    "hann8": _Kind("cosine", True, 8),
}
#: Every window kind, for ``--blend`` choices and error messages.
BLEND_KINDS = tuple(_KINDS)
#: The default. Tiled vs whole-image on real photos (README): within 0.4 dB of a linear ramp at
#: a true overlap of 32, where context is what limits; 6-13 dB ahead of it at an overlap of 64.
DEFAULT_BLEND = "hann8"


def _kind(kind: str) -> _Kind:
    try:
        return _KINDS[kind]
    except KeyError:
        raise TilingError(f"unknown blend kind {kind!r}; choose from {', '.join(_KINDS)}") from None


def window_1d(length: int, overlap_before: int, overlap_after: int,
              kind: str = DEFAULT_BLEND) -> np.ndarray:
    """1-D blend window of ``length`` float32 weights, > 0, flat on sides with overlap 0."""
    spec = _kind(kind)
    if length < 1 or overlap_before < 0 or overlap_after < 0:
        raise TilingError(f"window needs length >= 1 and overlaps >= 0, got length {length}, "
                          f"overlaps {overlap_before}/{overlap_after}")
    i = np.arange(length, dtype=np.float64)
    u = np.ones(length, dtype=np.float64)
    for overlap, dist in ((overlap_before, i + 0.5), (overlap_after, length - i - 0.5)):
        if overlap > 0:
            ramp = length / 2 if spec.whole_tile else float(overlap)
            u = np.minimum(u, dist / ramp)
    f = u if spec.shape == "linear" else 0.5 - 0.5 * np.cos(np.pi * u)
    w = f
    for _ in range(spec.power - 1):
        w = w * f
    return np.maximum(w, WEIGHT_FLOOR).astype(np.float32)


def tile_weight(h: int, w: int, overlaps: tuple[int, int, int, int],
                kind: str = DEFAULT_BLEND) -> np.ndarray:
    """(h, w) float32 weight of a tile; ``overlaps`` = (top, bottom, left, right) in pixels."""
    top, bottom, left, right = overlaps
    wy = window_1d(h, top, bottom, kind)
    wx = window_1d(w, left, right, kind)
    return np.maximum(wy[:, None] * wx[None, :], np.float32(WEIGHT_FLOOR))


def _check_f32(name: str, array: np.ndarray, ndim: int) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.ndim != ndim:
        raise TilingError(f"{name} must be a {ndim}-D float32 array, got "
                          f"{getattr(array, 'dtype', type(array).__name__)} "
                          f"{getattr(array, 'shape', '')}")


def accumulate(canvas: np.ndarray, weight_sum: np.ndarray, tile_out: np.ndarray,
               weight: np.ndarray, y: int, x: int) -> None:
    """Add ``tile_out * weight`` to ``canvas`` and ``weight`` to ``weight_sum`` at (y, x), in place.

    ``canvas``: (C, H, W), ``weight_sum``: (H, W), ``tile_out``: (C, h, w), ``weight``: (h, w),
    all float32; the tile must lie inside the canvas.
    """
    for name, array, ndim in (("canvas", canvas, 3), ("weight_sum", weight_sum, 2),
                              ("tile_out", tile_out, 3), ("weight", weight, 2)):
        _check_f32(name, array, ndim)
    c, h, w = tile_out.shape
    if (weight.shape != (h, w) or canvas.shape[0] != c or canvas.shape[1:] != weight_sum.shape
            or y < 0 or x < 0 or y + h > canvas.shape[1] or x + w > canvas.shape[2]):
        raise TilingError(f"tile {tile_out.shape} with weight {weight.shape} at ({y}, {x}) does "
                          f"not fit canvas {canvas.shape} / weight sum {weight_sum.shape}")
    canvas[:, y:y + h, x:x + w] += tile_out * weight
    weight_sum[y:y + h, x:x + w] += weight


def normalize(canvas: np.ndarray, weight_sum: np.ndarray) -> np.ndarray:
    """``canvas / weight_sum`` as a new (C, H, W) float32 array; every pixel must be covered."""
    _check_f32("canvas", canvas, 3)
    _check_f32("weight_sum", weight_sum, 2)
    if canvas.shape[1:] != weight_sum.shape:
        raise TilingError(f"canvas {canvas.shape} and weight sum {weight_sum.shape} differ")
    if not (weight_sum > 0).all():
        raise TilingError("some output pixels were covered by no tile (weight sum 0)")
    return canvas / weight_sum


def to_uint(image: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float image in [0, 1] (any shape) to uint8 (bit_depth 8) or uint16 (16); see contract."""
    if bit_depth not in (8, 16):
        raise TilingError(f"bit depth must be 8 or 16, got {bit_depth}")
    v = np.fmin(np.fmax(np.asarray(image, dtype=np.float32), np.float32(0)), np.float32(1))
    v = np.rint(v * np.float32((1 << bit_depth) - 1))
    return v.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _source_index(start: int, size: int, n: int, pad_mode: str) -> np.ndarray:
    i = np.arange(start, start + size)
    if pad_mode == "replicate":
        return np.clip(i, 0, n - 1)
    if n == 1:
        return np.zeros(size, dtype=i.dtype)
    period = 2 * (n - 1)
    j = np.mod(i, period)
    return np.where(j >= n, period - j, j)


def extract_tile(image: np.ndarray, y0: int, x0: int, h: int, w: int,
                 pad_mode: str = "reflect") -> np.ndarray:
    """``image[..., y0:y0+h, x0:x0+w]``, padded by ``pad_mode`` where it runs past the border."""
    if pad_mode not in PAD_MODES:
        raise TilingError(f"unknown pad mode {pad_mode!r}; choose from {', '.join(PAD_MODES)}")
    if image.ndim < 2 or min(image.shape[-2:]) < 1 or h < 1 or w < 1:
        raise TilingError(f"cannot take a {h}x{w} tile from an array of shape {image.shape}")
    n_h, n_w = image.shape[-2:]
    if y0 >= 0 and x0 >= 0 and y0 + h <= n_h and x0 + w <= n_w:
        return np.ascontiguousarray(image[..., y0:y0 + h, x0:x0 + w])
    rows = _source_index(y0, h, n_h, pad_mode)
    cols = _source_index(x0, w, n_w, pad_mode)
    return np.ascontiguousarray(image[..., rows[:, None], cols[None, :]])
