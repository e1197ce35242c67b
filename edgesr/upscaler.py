"""Upscaler: runs a Runtime over an image tile by tile and blends the tiles back together.

Images are HWC (or HW) float32 in [0, 1] with 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)
channels; the result has the same channels, float32 in [0, 1] (``kernels.blend.to_uint``
converts it).

``Upscaler.upscale`` is four public steps, which the streaming writer (``edgesr.streaming``),
the C library's reference tests and a service can call one by one:

1. ``plan(height, width)``: the tiles (``edgesr.tiling.Tile``) the image is cut into, all of
   one size, row-major.
2. ``split_planes(chw, has_alpha)``: the CHW image as (planes, model channels, H, W), the
   inputs the model takes (see Channels below).
3. ``infer_tiles(planes, tiles)``: each tile of every plane cut out (reflection padding past
   the border), run through ``runtime.infer`` ``batch`` tiles at a time (``infer_batch`` checks
   the output shape), and yielded per tile as its upscaled valid part, planes stacked, with
   its blend window (``blend_weight``).
4. Blend: ``kernels.native.accumulate`` adds each upscaled tile times its ``blend_weight``
   (a ``kernels.blend`` window over the tile's overlaps) into a canvas and a weight sum, and
   ``kernels.native.normalize`` divides (``blend_tiles`` does steps 1, 3 and 4 for a whole
   image); ``merge_planes`` turns the planes back into the image's channels.

Channels: a 3-channel model gets grey replicated to three channels and its output averaged back;
a 1-channel model gets every channel on its own. Alpha goes through the model too, as grey.
By default colour is premultiplied by alpha first and divided by the upscaled alpha after, so
the (often arbitrary) colour of fully transparent pixels cannot bleed into visible edges; an
alpha that is 1 everywhere is skipped and stays 1. ``premultiply_alpha=False`` upscales colour
and alpha independently (as Real-ESRGAN does), keeping colour under alpha 0.
"""

import math
from collections.abc import Iterator

import numpy as np
from PIL import Image

from edgesr.errors import InferenceError, TilingError
from edgesr.finite import check_tile
from edgesr.kernels.native import (
    BLEND_KINDS,
    DEFAULT_BLEND,
    PAD_MODES,
    accumulate,
    extract_tile,
    normalize,
    tile_weight,
)
from edgesr.progress import Progress
from edgesr.runtimes.base import Runtime
from edgesr.tiling import Tile, plan_tiles, round_up

#: Below this upscaled alpha (half a 16-bit step) a pixel is invisible: its colour becomes 0.
ALPHA_EPS = 0.5 / 65535


class Upscaler:
    """Tiled, batched, blended upscaling through an active Runtime.

    ``tile``: tile size in input pixels, rounded down to the model's size multiple (0 or None:
    the whole image in one piece; a fixed-shape runtime always uses its own shape).
    ``overlap``: the least overlap between neighbouring tiles, in input pixels.
    ``batch``: tiles per ``infer`` call (default: the runtime's preferred batch, capped by its
    max batch). ``blend``: a window from ``kernels.blend.BLEND_KINDS`` (None: the default).
    ``tta``: 8-fold self-ensemble (Real-ESRGAN's and realesrgan-ncnn-vulkan's ``-x``): every
    tile is run 8 times, flipped and rotated, and the outputs, turned back, are averaged. It is
    done per tile, so tiling, blending and streaming are unchanged (8 times the inference).
    ``progress``: a tile progress bar on stderr (``edgesr.progress``).
    """

    def __init__(self, runtime: Runtime, *, tile: int | None = 256, overlap: int = 32,
                 batch: int | None = None, blend: str | None = None, pad_mode: str = "reflect",
                 premultiply_alpha: bool = True, progress: bool = False, tta: bool = False):
        info = runtime.info
        self.runtime = runtime
        self.tile = tile or 0
        self.overlap = overlap
        self.blend = blend or DEFAULT_BLEND
        self.batch = info.preferred_batch if batch is None else batch
        if info.max_batch is not None:
            self.batch = min(self.batch, info.max_batch)
        self.pad_mode = pad_mode
        self.premultiply_alpha = premultiply_alpha
        self.progress = progress
        self.tta = tta
        if tta and info.fixed_hw is not None and info.fixed_hw[0] != info.fixed_hw[1]:
            raise TilingError(f"{runtime.name}: TTA rotates tiles, and this model takes only "
                              f"{info.fixed_hw[0]}x{info.fixed_hw[1]} ones (not square)")
        if self.tile < 0 or overlap < 0 or self.batch < 1:
            raise TilingError(f"need tile >= 0, overlap >= 0 and batch >= 1; got tile {tile}, "
                              f"overlap {overlap}, batch {batch}")
        if self.blend not in BLEND_KINDS:
            raise TilingError(f"unknown blend {self.blend!r}; choose from {', '.join(BLEND_KINDS)}")
        if pad_mode not in PAD_MODES:
            raise TilingError(f"unknown pad mode {pad_mode!r}; choose from {', '.join(PAD_MODES)}")
        if info.in_channels not in (1, 3) or info.out_channels != info.in_channels:
            raise TilingError(f"{runtime.name}: models with {info.in_channels} input and "
                              f"{info.out_channels} output channels are not supported "
                              "(need 1 -> 1 or 3 -> 3)")
        self.plan(1, 1)  # checks tile, overlap and the runtime's shape constraints together

    def with_tile(self, tile: int) -> "Upscaler":
        """A copy of this upscaler with another tile size."""
        return Upscaler(self.runtime, tile=tile, overlap=self.overlap, batch=self.batch,
                        blend=self.blend, pad_mode=self.pad_mode,
                        premultiply_alpha=self.premultiply_alpha, progress=self.progress,
                        tta=self.tta)

    def plan(self, height: int, width: int) -> list[Tile]:
        """The tiles an image of this size is cut into (input pixels)."""
        info = self.runtime.info
        if info.fixed_hw is not None:
            return plan_tiles(height, width, info.fixed_hw, self.overlap, fixed_shape=True)
        m = info.size_multiple
        if not self.tile:
            return plan_tiles(height, width, (round_up(height, m), round_up(width, m)), 0, m)
        return plan_tiles(height, width, max(m, self.tile // m * m), self.overlap, m)

    def output_size(self, height: int, width: int, outscale: float | None = None
                    ) -> tuple[int, int]:
        """(height, width) of the result: native scale, or ``floor(size * outscale + 0.5)``."""
        if outscale is None:
            scale = self.runtime.info.scale
            return height * scale, width * scale
        if not (isinstance(outscale, (int, float)) and math.isfinite(outscale) and outscale > 0):
            raise TilingError(f"outscale must be a positive number, got {outscale!r}")
        return (max(1, math.floor(height * outscale + 0.5)),
                max(1, math.floor(width * outscale + 0.5)))

    def upscale(self, image: np.ndarray, *, outscale: float | None = None) -> np.ndarray:
        """Upscale an HWC/HW float image in [0, 1]; same layout and channels, float32 in [0, 1]."""
        pixels = _check_image(image)
        height, width, channels = pixels.shape
        size = self.output_size(height, width, outscale)
        chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
        opaque = channels in (2, 4) and bool((chw[-1] >= 1).all())
        if opaque:
            chw = chw[:-1]
        has_alpha = chw.shape[0] in (2, 4)
        premultiplied = has_alpha and self.premultiply_alpha
        if premultiplied:
            chw[:-1] *= chw[-1]
        planes = self.blend_tiles(self.split_planes(chw, has_alpha))
        out = self.merge_planes(planes, chw.shape[0], has_alpha)
        if out.shape[1:] != size:
            out = resize(out, size)
        out = finish_channels(out, premultiplied=premultiplied, opaque=opaque).transpose(1, 2, 0)
        return np.ascontiguousarray(out[..., 0] if image.ndim == 2 else out)

    def split_planes(self, chw: np.ndarray, has_alpha: bool) -> np.ndarray:
        """Step 2: a (channels, H, W) image as (planes, model channels, H, W), the model's
        inputs: each channel alone for a 1-channel model; for a 3-channel one the colour (grey
        replicated to RGB) and, if ``has_alpha``, the last channel replicated as a second plane.
        Any dtype; ``infer_tiles`` converts integers to [0, 1] a tile at a time."""
        if self.runtime.info.in_channels == 1:
            return chw[:, None]
        colour = chw[:-1] if has_alpha else chw
        planes = [colour if len(colour) == 3 else np.repeat(colour, 3, axis=0)]
        if has_alpha:
            planes.append(np.repeat(chw[-1:], 3, axis=0))
        return np.stack(planes)

    def merge_planes(self, out: np.ndarray, channels: int, has_alpha: bool) -> np.ndarray:
        """Inverse of ``split_planes`` on upscaled (or any) planes: (``channels``, H', W'),
        replicated grey averaged back in float64."""
        if self.runtime.info.in_channels == 1:
            return out[:, 0]
        colour = out[0] if channels - has_alpha == 3 else _grey(out[0])
        return np.concatenate([colour, _grey(out[1])] if has_alpha else [colour])

    def infer_batch(self, batch: np.ndarray) -> np.ndarray:
        """Run one (N, C, h, w) float32 batch through the runtime; the output as float32,
        checked to be (N, out channels, h * scale, w * scale) (else an InferenceError).
        With ``tta``, the mean of the 8 flipped and rotated runs, each turned back; summed
        pairwise, so a model that commutes with flips and rotations gives its plain output
        exactly."""
        if not self.tta:
            return self._infer(batch)
        outs = [np.rot90(self._infer(np.ascontiguousarray(np.rot90(flip, k, (2, 3)))), -k,
                         (2, 3))
                for flip in (batch, batch[..., ::-1]) for k in range(4)]
        outs[4:] = [out[..., ::-1] for out in outs[4:]]
        while len(outs) > 1:
            outs = [a + b for a, b in zip(outs[::2], outs[1::2], strict=True)]
        return np.ascontiguousarray(outs[0] / np.float32(8))

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        info = self.runtime.info
        n, _, h, w = batch.shape
        out = np.asarray(self.runtime.infer(batch), dtype=np.float32)
        expected = (n, info.out_channels, h * info.scale, w * info.scale)
        if out.shape != expected:
            raise InferenceError(f"{self.runtime.name}: a {tuple(batch.shape)} batch gave "
                                 f"output {tuple(out.shape)}, expected {expected}")
        return out

    def infer_tiles(self, planes: np.ndarray, tiles: list[Tile]
                    ) -> Iterator[tuple[Tile, np.ndarray, np.ndarray]]:
        """Step 3: upscale ``tiles`` (from ``plan``) of (P, C, H, W) ``planes``, in order.

        Every plane of every tile is cut out with ``pad_mode`` padding past the border (integer
        pixels scaled to [0, 1], floats clipped to it) and run ``batch`` at a time; a batch may
        mix tiles and planes. Yields, as soon as all its planes are back, (tile, its upscaled
        part inside the image as (P * out channels, valid_h * scale, valid_w * scale), planes
        stacked, its ``blend_weight``): what step 4 accumulates. Windows of equal shape and
        overlaps are computed once per call.
        """
        weights: dict[tuple, np.ndarray] = {}
        n_planes = planes.shape[0]
        s = self.runtime.info.scale
        jobs = [(tile, p) for tile in tiles for p in range(n_planes)]
        pending: list[np.ndarray] = []
        finished = iter(tiles)
        for start in range(0, len(jobs), self.batch):
            batch = np.stack([_to_float(extract_tile(planes[p], t.y, t.x, t.h, t.w,
                                                     self.pad_mode))
                              for t, p in jobs[start:start + self.batch]])
            pending.extend(self.infer_batch(batch))
            while len(pending) >= n_planes:  # every plane of the next tile is back
                tile = next(finished)
                out = np.concatenate(pending[:n_planes])[:, :tile.valid_h * s, :tile.valid_w * s]
                del pending[:n_planes]
                check_tile(out, tile)
                key = (tile.valid_h, tile.valid_w, tile.overlap)
                if key not in weights:
                    weights[key] = self.blend_weight(tile)
                yield tile, out, weights[key]

    def blend_weight(self, tile: Tile) -> np.ndarray:
        """Step 4's window for ``tile``'s upscaled valid part: (valid_h * scale,
        valid_w * scale) float32, ramping over the tile's overlaps only."""
        s = self.runtime.info.scale
        return tile_weight(tile.valid_h * s, tile.valid_w * s, tuple(o * s for o in tile.overlap),
                           self.blend)

    def blend_tiles(self, planes: np.ndarray) -> np.ndarray:
        """Steps 1, 3 and 4 on a whole image: (P, C, H, W) planes upscaled to
        (P, out channels, H * scale, W * scale)."""
        info = self.runtime.info
        n_planes, _, height, width = planes.shape
        s, c_out = info.scale, info.out_channels
        tiles = self.plan(height, width)
        canvas = np.zeros((n_planes * c_out, height * s, width * s), np.float32)
        weight_sum = np.zeros((height * s, width * s), np.float32)
        with Progress(len(tiles) * n_planes, unit="tile", enabled=self.progress,
                      leave=False) as bar:
            for tile, out, weight in self.infer_tiles(planes, tiles):
                accumulate(canvas, weight_sum, out, weight, tile.y * s, tile.x * s)
                bar.update(n_planes)
        out = normalize(canvas, weight_sum)
        return out.reshape(n_planes, c_out, height * s, width * s)


def finish_channels(out: np.ndarray, *, premultiplied: bool, opaque: bool) -> np.ndarray:
    """Blended (channels, H, W) output clipped to [0, 1], colour divided by a premultiplied
    alpha again, and an opaque alpha (dropped before inference) put back as ones."""
    out = np.clip(out, 0, 1)
    if premultiplied:
        alpha = out[-1:]
        colour = np.divide(out[:-1], alpha, out=np.zeros_like(out[:-1]), where=alpha > ALPHA_EPS)
        out = np.concatenate([np.minimum(colour, 1), alpha])
    if opaque:
        out = np.concatenate([out, np.ones((1, *out.shape[1:]), np.float32)])
    return out


def _to_float(tile: np.ndarray) -> np.ndarray:
    """A tile as float32 in [0, 1]: integers divided by their dtype's maximum, floats clipped."""
    if np.issubdtype(tile.dtype, np.integer):
        return tile.astype(np.float32) / np.float32(np.iinfo(tile.dtype).max)
    return np.clip(tile, 0, 1).astype(np.float32, copy=False)


def _grey(planes: np.ndarray) -> np.ndarray:
    """Mean over the channels, summed in float64: exact when the channels are equal."""
    return planes.mean(axis=0, dtype=np.float64, keepdims=True).astype(np.float32)


def _check_image(image: np.ndarray) -> np.ndarray:
    """The image as HWC float32 clipped to [0, 1], or a TilingError saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise TilingError(f"expected a NumPy image array, got {type(image).__name__}")
    pixels = image[..., None] if image.ndim == 2 else image
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or 0 in pixels.shape:
        raise TilingError(f"expected an HW or HWC image with 1-4 channels, got shape {image.shape}")
    if not np.issubdtype(pixels.dtype, np.floating):
        raise TilingError(f"expected a float image in [0, 1], got {pixels.dtype} "
                          "(divide 8-bit images by 255, 16-bit by 65535)")
    return np.clip(pixels, 0, 1).astype(np.float32, copy=False)


def resize(chw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (C, H, W) float32 image to ``size`` (height, width) with antialiased bicubic.

    Pillow's float ("F") resampling, channel by channel: the filter (a = -0.5, support widened
    by the scale when shrinking) that PyTorch's ``interpolate(mode="bicubic", antialias=True)``
    copies; the two agree within 2e-6 on [0, 1] images (tests/test_upscaler.py).
    """
    height, width = size
    planes = np.ascontiguousarray(chw, dtype=np.float32)
    out = np.empty((planes.shape[0], height, width), np.float32)
    for c, plane in enumerate(planes):
        out[c] = np.asarray(Image.fromarray(plane, mode="F").resize(
            (width, height), Image.Resampling.BICUBIC))
    return out
