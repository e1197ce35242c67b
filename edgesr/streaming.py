"""Streaming upscale: tile rows in, finished output rows out, so memory stays flat in image size.

The image is upscaled one row of tiles at a time into a band canvas as tall as one upscaled tile.
When the next tile row starts at output row ``r``, every row above ``r`` is final (tiles come in
plan order): those rows are normalised, turned back into the image's channels (alpha divided
out, as ``Upscaler.upscale`` does), converted to integers and handed to a row writer (PNG:
``PngRowWriter``; TIFF: ``tiff.TiffStripWriter``), and the rest of the band moves up. Peak
memory is one band (``tile * scale`` rows of the output width, float32 per channel plus the
weight sum) plus one batch of tiles plus two copies of the input (CHW, and the model's planes)
in its own dtype (e.g. uint8; float32 with premultiplied alpha), converted to float32 a tile at
a time. Results equal ``Upscaler.upscale`` followed by ``kernels.blend.to_uint``, bit for bit.
``auto_tile`` picks the tile size from a memory budget, streamed or not (``whole_image_bytes``).
"""

import itertools
import os
from collections.abc import Iterator

import numpy as np

from edgesr.errors import TilingError
from edgesr.kernels.native import (
    BACKEND,
    accumulate,
    normalize,
    to_uint,
)
from edgesr.png import PngRowWriter
from edgesr.progress import Progress
from edgesr.tiff import TiffStripWriter
from edgesr.upscaler import Upscaler, finish_channels

_FLUSH_ROWS = 32  # output rows normalised, converted and written at a time


def upscale_to_png(upscaler: Upscaler, image: np.ndarray, path: str | os.PathLike, *,
                   bit_depth: int = 8, compress_level: int = 6, icc_profile: bytes | None = None,
                   dpi: tuple[float, float] | None = None, exif: bytes | None = None) -> None:
    """Upscale an HW or HWC (1-4 channels) uint8/uint16/float image into a PNG, row band by
    row band, at the runtime's native scale; ``icc_profile``, ``dpi`` (of the output) and
    ``exif`` go into the file."""
    height, width, channels = _shape(image)
    s = upscaler.runtime.info.scale
    with PngRowWriter(path, width * s, height * s, channels, bit_depth, compress_level,
                      icc_profile=icc_profile, dpi=dpi, exif=exif) as writer:
        for rows in stream_rows(upscaler, image, bit_depth):
            writer.write(rows)


def upscale_to_tiff(upscaler: Upscaler, image: np.ndarray, path: str | os.PathLike, *,
                    bit_depth: int = 8, compress_level: int = 6,
                    icc_profile: bytes | None = None,
                    dpi: tuple[float, float] | None = None) -> None:
    """``upscale_to_png`` into a TIFF (deflate strips, ``tiff.TiffStripWriter``)."""
    height, width, channels = _shape(image)
    s = upscaler.runtime.info.scale
    with TiffStripWriter(path, width * s, height * s, channels, bit_depth, compress_level,
                         icc_profile=icc_profile, dpi=dpi) as writer:
        for rows in stream_rows(upscaler, image, bit_depth):
            writer.write(rows)


def stream_rows(upscaler: Upscaler, image: np.ndarray, bit_depth: int = 8
                ) -> Iterator[np.ndarray]:
    """The upscaled ``image`` (HW or HWC, 1-4 channels, uint8/uint16/float) at the runtime's
    native scale, as (rows, width, channels) uint8/uint16 blocks from top to bottom."""
    _shape(image)
    chw = np.ascontiguousarray(image[None] if image.ndim == 2 else image.transpose(2, 0, 1))
    channels = chw.shape[0]
    top_value = np.iinfo(chw.dtype).max if chw.dtype.kind in "ui" else 1
    opaque = channels in (2, 4) and bool((chw[-1] >= top_value).all())
    if opaque:  # as Upscaler.upscale: an alpha of 1 everywhere is skipped and stays 1
        chw = chw[:-1]
    has_alpha = chw.shape[0] in (2, 4)
    premultiplied = has_alpha and upscaler.premultiply_alpha
    if premultiplied:
        chw = (chw.astype(np.float32) / np.float32(top_value) if top_value != 1 else
               np.clip(chw, 0, 1).astype(np.float32))
        chw[:-1] *= chw[-1]
    planes = upscaler.split_planes(chw, has_alpha)
    n_planes, c_model, height, width = planes.shape
    s = upscaler.runtime.info.scale
    tiles = upscaler.plan(height, width)
    band = np.zeros((n_planes * c_model, tiles[0].h * s, width * s), np.float32)
    weight_sum = np.zeros(band.shape[1:], np.float32)
    top = 0  # output row of band[:, 0]

    def finish(n: int) -> Iterator[np.ndarray]:
        """The band's first n rows as integers, in slices (temporaries stay small)."""
        for r in range(0, n, _FLUSH_ROWS):
            k = min(_FLUSH_ROWS, n - r)
            out = normalize(band[:, r:r + k], weight_sum[r:r + k])
            out = upscaler.merge_planes(out.reshape(n_planes, c_model, k, -1), chw.shape[0],
                                        has_alpha)
            out = finish_channels(out, premultiplied=premultiplied, opaque=opaque)
            yield to_uint(out.transpose(1, 2, 0), bit_depth)

    def move_up(n: int) -> None:
        """Drop the band's first n rows (copies of <= n rows: no overlap)."""
        for i in range(0, len(weight_sum) - n, n):
            src = slice(i + n, min(i + 2 * n, len(weight_sum)))
            dst = slice(i, src.stop - n)
            band[:, dst], weight_sum[dst] = band[:, src], weight_sum[src]
        band[:, -n:], weight_sum[-n:] = 0, 0

    with Progress(len(tiles) * n_planes, unit="tile", enabled=upscaler.progress,
                  leave=False) as bar:
        for y, row in itertools.groupby(tiles, key=lambda t: t.y):
            if y * s > top:
                yield from finish(y * s - top)
                move_up(y * s - top)
                top = y * s
            for tile, out, weight in upscaler.infer_tiles(planes, list(row)):
                accumulate(band, weight_sum, out, weight, tile.y * s - top, tile.x * s)
                bar.update(n_planes)
    yield from finish(height * s - top)


def _shape(image: np.ndarray) -> tuple[int, int, int]:
    """(height, width, channels) of an HW or HWC image with 1-4 channels, else a TilingError."""
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)) \
            or 0 in image.shape:
        raise TilingError(f"streaming takes HW or HWC images with 1-4 channels, got shape "
                          f"{image.shape}")
    return (*image.shape[:2], 1 if image.ndim == 2 else image.shape[2])


LARGEST_TILE = 1024  # auto_tile's default upper bound, in input pixels


def auto_tile(max_memory: float, *, height: int, width: int, scale: int, channels: int,
              model_bytes_per_pixel: float, reserved: float, stream: bool,
              model_fixed_bytes: float = 0.0, lanes: int | None = None,
              out_size: tuple[int, int] | None = None, bit_depth: int = 8, multiple: int = 1,
              batch: int = 1, overlap: int = 0, largest: int = LARGEST_TILE) -> int:
    """Largest tile (input pixels, a multiple of ``multiple``, from 32 or twice ``overlap`` to
    ``largest``) for which the process's peak memory stays within ``max_memory`` bytes.

    Counted: ``reserved`` (what the process holds already: its RSS at planning time, the decoded
    input image included); one batch of tiles (``model_fixed_bytes`` plus
    ``model_bytes_per_pixel`` per input pixel per tile, as ``model_memory`` measures them, plus
    the upscaled tiles twice: output and concatenation); and either the streaming band or, when
    not ``stream``, ``whole_image_bytes``. The band: the float32 image's CHW copy and planes, the
    band canvas and weight sum, and a flush's temporaries. ``lanes``: planes x model channels
    the image becomes (default ``channels``). ``out_size``, ``bit_depth``: of the written image.
    """
    lanes = lanes or channels
    p_in = height * width

    def tiles(tile: int) -> float:
        return model_fixed_bytes + batch * tile * tile * (
            model_bytes_per_pixel + 2 * lanes * scale * scale * 4)

    def band(tile: int) -> float:
        row = width * scale * 4  # bytes of one float32 output row of one channel
        return (p_in * 4 * (channels + lanes) + tile * scale * row * (lanes + 1)
                + _FLUSH_ROWS * row * (lanes + 4 * channels))

    whole = whole_image_bytes(height, width, scale=scale, channels=channels, lanes=lanes,
                              out_size=out_size, bit_depth=bit_depth)

    def need(tile: int) -> float:
        return reserved + tiles(tile) + (band(tile) if stream else whole)

    smallest = -(-max(32, 2 * overlap) // multiple) * multiple
    if need(smallest) > max_memory:
        streamed = reserved + tiles(smallest) + band(smallest)
        if not stream and streamed <= max_memory:
            raise TilingError(
                f"max memory {max_memory / 1e6:.0f} MB is too small to hold the whole "
                f"{height * scale}x{width * scale} output: it needs {whole / 1e6:.0f} MB on top "
                f"of the {reserved / 1e6:.0f} MB in use and {tiles(smallest) / 1e6:.0f} MB for "
                f"{smallest}-pixel tiles; streamed (PNG or TIFF at the model's scale, without "
                f"--no-stream) it fits")
        raise TilingError(f"max memory {max_memory / 1e6:.0f} MB is too small: {smallest}-pixel "
                          f"tiles at width {width} need {need(smallest) / 1e6:.0f} MB "
                          f"({reserved / 1e6:.0f} MB of it in use before the first tile)")
    tile = smallest
    while tile + multiple <= largest and need(tile + multiple) <= max_memory:
        tile += multiple
    return tile


def whole_image_bytes(height: int, width: int, *, scale: int, channels: int, lanes: int,
                      out_size: tuple[int, int] | None = None, bit_depth: int = 8) -> float:
    """Peak bytes ``Upscaler.upscale`` and ``write_image`` hold beyond the decoded input image,
    tiles apart: the input's copies plus the largest of these steps, counted from their code.

    ``blend_tiles``: canvas, weight sum and the normalised copy; ``merge_planes``: normalised lanes,
    merged channels and, where lanes are averaged to grey (``lanes > channels``), a float64 mean;
    resizing to ``out_size``: source, separable pass, result; finishing: the clipped copy, alpha
    division temporaries and the HWC copy; writing: the float pixels, a JPEG's alpha composite,
    ``to_uint``'s temporaries (NumPy kernels only), the integers and the encoder's copy (Pillow: 4
    bytes a pixel; 16-bit TIFF: deltas, strip). Checked against the measured peak of an RGB x4 run:
    within 1% with the native kernels, where ``blend_tiles`` is the largest step.
    """
    f, c, ints = 4, channels, channels * bit_depth // 8  # bytes a float; integer bytes a pixel
    p_in, p_out = height * width, height * width * scale * scale
    p_res = out_size[0] * out_size[1] if out_size else p_out
    alpha = c in (2, 4)
    inputs = p_in * f * (2 * c + lanes)  # _check_image's clipped copy, CHW copy, model planes
    steps = [p_out * f * (2 * lanes + 1),
             p_out * f * (lanes + c + 3 * (lanes > c)),
             f * c * 2 * (p_out + p_res) if out_size else 0,
             p_res * f * (c * (4 if alpha else 2) + 1),
             p_res * (f * c * (1 + 3 * alpha + 3 * (BACKEND == "numpy")) + ints + max(4, 2 * ints))]
    return inputs + max(steps)
