"""Streaming upscale: tile rows in, finished output rows out, so memory stays flat in image size.

The image is upscaled one row of tiles at a time into a band canvas as tall as one upscaled tile.
When the next tile row starts at output row ``r``, every row above ``r`` is final (tiles come in
plan order): those rows are normalised, converted to integers and written to a ``PngRowWriter``,
and the rest of the band moves up. Peak memory is one band (``tile * scale`` rows of the output
width, float32 per channel plus the weight sum) plus one batch of tiles; the input stays as given
(e.g. uint8), converted to float32 a tile at a time. Results equal ``Upscaler.upscale`` followed
by ``kernels.blend.to_uint``, bit for bit. ``auto_tile`` picks the tile size from a memory budget.
"""

import itertools
import os

import numpy as np

from edgesr.errors import TilingError
from edgesr.kernels.native import accumulate, extract_tile, normalize, tile_weight, to_uint
from edgesr.png import PngRowWriter
from edgesr.upscaler import Upscaler

_FLUSH_ROWS = 32  # output rows normalised, converted and written at a time


def _to_float(tile: np.ndarray) -> np.ndarray:
    if np.issubdtype(tile.dtype, np.integer):
        return tile.astype(np.float32) / np.float32(np.iinfo(tile.dtype).max)
    return np.clip(tile, 0, 1).astype(np.float32, copy=False)


def upscale_to_png(upscaler: Upscaler, image: np.ndarray, path: str | os.PathLike, *,
                   bit_depth: int = 8, compress_level: int = 6) -> None:
    """Upscale an HW or HWC (1 or 3 channels) uint8/uint16/float image into a PNG, row band by
    row band, at the runtime's native scale."""
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise TilingError(f"streaming takes HW or HWC images with 1 or 3 channels, got shape "
                          f"{image.shape} (alpha: use Upscaler.upscale)")
    chw = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
    planes = upscaler._split(np.ascontiguousarray(chw), has_alpha=False)
    n_planes, c_model, height, width = planes.shape
    s = upscaler.runtime.info.scale
    tiles = upscaler.plan(height, width)
    band = np.zeros((n_planes * c_model, tiles[0].h * s, width * s), np.float32)
    weight_sum = np.zeros(band.shape[1:], np.float32)
    weights: dict[tuple, np.ndarray] = {}
    top = 0  # output row of band[:, 0]

    def flush(n: int) -> None:
        """Write the band's first n rows, move the rest up (copies of <= n rows: no overlap)."""
        for r in range(0, n, _FLUSH_ROWS):  # in slices: temporaries stay small
            k = min(_FLUSH_ROWS, n - r)
            out = normalize(band[:, r:r + k], weight_sum[r:r + k])
            out = upscaler._merge(out.reshape(n_planes, c_model, k, -1), chw.shape[0], False)
            writer.write(to_uint(np.clip(out, 0, 1).transpose(1, 2, 0), bit_depth))
        for i in range(0, len(weight_sum) - n, n):
            src = slice(i + n, min(i + 2 * n, len(weight_sum)))
            dst = slice(i, src.stop - n)
            band[:, dst], weight_sum[dst] = band[:, src], weight_sum[src]
        band[:, -n:], weight_sum[-n:] = 0, 0

    def add(tile, pieces: list[np.ndarray]) -> None:
        vh, vw = tile.valid_h * s, tile.valid_w * s
        key = (vh, vw, tile.overlap)
        if key not in weights:
            weights[key] = tile_weight(vh, vw, tuple(o * s for o in tile.overlap), upscaler.blend)
        accumulate(band, weight_sum, np.concatenate(pieces)[:, :vh, :vw], weights[key],
                   tile.y * s - top, tile.x * s)

    with PngRowWriter(path, width * s, height * s, chw.shape[0], bit_depth,
                      compress_level) as writer:
        for y, row in itertools.groupby(tiles, key=lambda t: t.y):
            if y * s > top:
                flush(y * s - top)
                top = y * s
            row = list(row)
            jobs = [(t, p) for t in row for p in range(n_planes)]
            pending: list[np.ndarray] = []
            finished = iter(row)
            for start in range(0, len(jobs), upscaler.batch):
                batch = np.stack([_to_float(extract_tile(planes[p], t.y, t.x, t.h, t.w,
                                                         upscaler.pad_mode))
                                  for t, p in jobs[start:start + upscaler.batch]])
                pending.extend(upscaler._infer(batch))
                while len(pending) >= n_planes:  # every plane of the next tile is back
                    add(next(finished), pending[:n_planes])
                    del pending[:n_planes]
        flush(height * s - top)


def auto_tile(max_memory: float, *, width: int, scale: int, channels: int, multiple: int = 1,
              batch: int = 1, model_bytes_per_pixel: int = 1024, reserved: float = 200e6,
              largest: int = 1024) -> int:
    """Largest tile (input pixels, a multiple of ``multiple``, 32 to ``largest``) whose streaming
    run fits ``max_memory`` bytes.

    Counted: ``reserved`` (interpreter, libraries, weights), the band (canvas and weight sum plus
    the flush's temporaries: (4 * channels + 1) float32 per band pixel), one batch of upscaled
    tiles (twice: output and its concatenation) and the runtime's activations,
    ``model_bytes_per_pixel`` per input pixel per tile (about 1 KiB for a 64-feature float32
    network; measure a backend with ``edgesr bench`` and pass its figure).
    """
    def need(tile: int) -> float:
        band = tile * scale * width * scale * 4 * (4 * channels + 1)
        tiles = batch * tile * tile * (2 * channels * scale * scale * 4 + model_bytes_per_pixel)
        return reserved + band + tiles

    smallest = -(-32 // multiple) * multiple
    if need(smallest) > max_memory:
        raise TilingError(f"max memory {max_memory / 1e6:.0f} MB is too small: {smallest}-pixel "
                          f"tiles at width {width} need {need(smallest) / 1e6:.0f} MB")
    tile = smallest
    while tile + multiple <= largest and need(tile + multiple) <= max_memory:
        tile += multiple
    return tile
