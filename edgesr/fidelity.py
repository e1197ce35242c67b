"""Fidelity to the input: downscale the output back to the input size and see where it departs.

A super-resolution model assumes the input is a downscaled version of the answer; the output,
downscaled the same way (bicubic or area, antialiased), should give the input back. Where it
does not, the model invented structure rather than recovered it. ``consistency_map`` says where
and how much (mean absolute error over channels, per input pixel); ``consistency_score`` is one
number, the PSNR of downscale(output) against the input.
"""

import math
import os
from pathlib import Path

import numpy as np

from edgesr.errors import EdgesrError

DOWNSAMPLE_METHODS = ("bicubic", "area")
#: PSNR reported for an exact match (and the cap for near-exact ones), so it stays finite in JSON.
MAX_PSNR_DB = 100.0
#: Error shown at the top of the heat map's colour scale by default (about 25/255).
DEFAULT_MAP_VMAX = 0.1


class FidelityError(EdgesrError):
    """Images of incompatible shapes, or an unknown downsampling method."""


def downscale(image: np.ndarray, height: int, width: int, method: str = "bicubic") -> np.ndarray:
    """Resize an HWC float image down to ``height`` × ``width`` with an antialiased filter."""
    if method not in DOWNSAMPLE_METHODS:
        raise FidelityError(f"unknown downsampling {method!r}; "
                            f"choose {' or '.join(DOWNSAMPLE_METHODS)}")
    if method == "area":
        return _area_axis(_area_axis(np.asarray(image, np.float32), height, 0), width, 1)
    from edgesr.upscaler import resize

    chw = np.ascontiguousarray(np.moveaxis(np.asarray(image, np.float32), 2, 0))
    return np.moveaxis(resize(chw, (height, width)), 0, 2)


def _area_axis(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Adaptive average pooling of one axis to ``size`` (PyTorch's "area"): output i is the
    mean of inputs floor(i n / size) .. ceil((i + 1) n / size) - 1."""
    n = image.shape[axis]
    i = np.arange(size)
    start, end = i * n // size, -((-(i + 1) * n) // size)
    sums = np.cumsum(image, axis=axis, dtype=np.float64)
    sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
    shape = [1] * image.ndim
    shape[axis] = size
    means = (np.take(sums, end, axis=axis) - np.take(sums, start, axis=axis)) \
        / (end - start).reshape(shape)
    return means.astype(np.float32)


def _aligned(source: np.ndarray, output: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(input, downscaled output) as HWC float32 arrays with the same channels."""
    source = source[..., None] if source.ndim == 2 else source
    output = output[..., None] if output.ndim == 2 else output
    if source.ndim != 3 or output.ndim != 3:
        raise FidelityError(f"expected HWC images, got shapes {source.shape} and {output.shape}")
    h, w = source.shape[:2]
    if output.shape[0] < h or output.shape[1] < w:
        raise FidelityError(f"output {output.shape[1]}x{output.shape[0]} is smaller than the "
                            f"input {w}x{h}")
    channels = min(source.shape[2], output.shape[2])
    down = downscale(output[..., :channels], h, w, method)
    return source[..., :channels].astype(np.float32), np.clip(down, 0, 1)


def consistency_map(source: np.ndarray, output: np.ndarray, method: str = "bicubic") -> np.ndarray:
    """Per input pixel, mean absolute difference between downscale(output) and the input (HxW)."""
    src, down = _aligned(source, output, method)
    return np.abs(down - src).mean(axis=2)


def psnr_from_mse(mse: float, cap: float | None = MAX_PSNR_DB) -> float:
    """PSNR in dB for data range 1 (values in [0, 1]): ``-10 log10(mse)``, at most ``cap``
    (None: uncapped, inf for mse 0). The one PSNR convention of edgesr; reports keep the
    default cap so an exact match stays finite in JSON."""
    if cap is not None and mse <= 10 ** (-cap / 10):
        return cap
    return math.inf if mse <= 0 else float(-10 * np.log10(mse))


def psnr(a: np.ndarray, b: np.ndarray, *, cap: float | None = MAX_PSNR_DB) -> float:
    """PSNR in dB of two arrays in [0, 1], from their MSE in float64 (``psnr_from_mse``)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return psnr_from_mse(mse, cap)


def consistency_score(source: np.ndarray, output: np.ndarray, method: str = "bicubic") -> float:
    """PSNR (dB) of downscale(output) against the input: high means faithful to the input."""
    return psnr(*_aligned(source, output, method))


def heat_map(error: np.ndarray, vmax: float = DEFAULT_MAP_VMAX) -> np.ndarray:
    """Colour an HxW error map (0 → dark, ``vmax`` and above → bright) as HxWx3 float RGB."""
    try:
        from matplotlib import colormaps
    except ImportError:
        raise EdgesrError("the consistency heat map needs matplotlib: "
                          "pip install 'edgesr[bench]'") from None

    scaled = np.clip(error / vmax, 0, 1)
    return colormaps["inferno"](scaled)[..., :3].astype(np.float32)


def write_consistency_map(path: str | os.PathLike, source: np.ndarray, output: np.ndarray, *,
                          method: str = "bicubic", vmax: float = DEFAULT_MAP_VMAX) -> float:
    """Write the heat map of ``consistency_map`` to ``path`` (atomically); return the score."""
    from edgesr.imageio import write_image

    src, down = _aligned(source, output, method)
    write_image(path, heat_map(np.abs(down - src).mean(axis=2), vmax), bit_depth=8)
    return psnr(src, down)


def upscale_with_map(upscaler, source: Path, target: Path, map_path: Path, *,
                     method: str = "bicubic", outscale: float | None = None,
                     bit_depth: int | None = None) -> float:
    """Upscale one image file, write it and its consistency map; return the consistency score."""
    from edgesr.imageio import read_image, write_image

    image = read_image(source)
    pixels = upscaler.upscale(image.pixels, outscale=outscale)
    write_image(target, pixels, bit_depth=bit_depth or image.bit_depth, like=image)
    return write_consistency_map(map_path, image.pixels, pixels, method=method)
