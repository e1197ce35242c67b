"""Upscaler: runs a Runtime over an image tile by tile and blends the tiles back together.

Images are HWC (or HW) float32 in [0, 1] with 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)
channels; the result has the same channels, float32 in [0, 1] (``kernels.blend.to_uint``
converts it). Tiles are planned by ``edgesr.tiling``, padded by reflection where they run past
the border, batched through ``runtime.infer`` and blended with a ``kernels.blend`` window.

Channels: a 3-channel model gets grey replicated to three channels and its output averaged back;
a 1-channel model gets every channel on its own. Alpha goes through the model too, as grey.
By default colour is premultiplied by alpha first and divided by the upscaled alpha after, so
the (often arbitrary) colour of fully transparent pixels cannot bleed into visible edges; an
alpha that is 1 everywhere is skipped and stays 1. ``premultiply_alpha=False`` upscales colour
and alpha independently (as Real-ESRGAN does), keeping colour under alpha 0.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

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
    """

    def __init__(self, runtime: Runtime, *, tile: int | None = 256, overlap: int = 32,
                 batch: int | None = None, blend: str | None = None, pad_mode: str = "reflect",
                 premultiply_alpha: bool = True, progress: bool = False):
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
                        premultiply_alpha=self.premultiply_alpha, progress=self.progress)

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
        out = self._merge(self._run(self._split(chw, has_alpha)), chw.shape[0], has_alpha)
        if out.shape[1:] != size:
            out = resize(out, size)
        out = np.clip(out, 0, 1)
        if premultiplied:
            alpha = out[-1:]
            colour = np.divide(out[:-1], alpha, out=np.zeros_like(out[:-1]),
                               where=alpha > ALPHA_EPS)
            out = np.concatenate([np.minimum(colour, 1), alpha])
        if opaque:
            out = np.concatenate([out, np.ones((1, *size), np.float32)])
        out = out.transpose(1, 2, 0)
        return np.ascontiguousarray(out[..., 0] if image.ndim == 2 else out)

    def _split(self, chw: np.ndarray, has_alpha: bool) -> np.ndarray:
        """(planes, model channels, H, W): the image as the model's inputs."""
        if self.runtime.info.in_channels == 1:
            return chw[:, None]
        colour = chw[:-1] if has_alpha else chw
        planes = [colour if len(colour) == 3 else np.repeat(colour, 3, axis=0)]
        if has_alpha:
            planes.append(np.repeat(chw[-1:], 3, axis=0))
        return np.stack(planes)

    def _merge(self, out: np.ndarray, channels: int, has_alpha: bool) -> np.ndarray:
        """Inverse of ``_split`` on the upscaled planes: (channels, H', W')."""
        if self.runtime.info.in_channels == 1:
            return out[:, 0]
        colour = out[0] if channels - has_alpha == 3 else _grey(out[0])
        return np.concatenate([colour, _grey(out[1])] if has_alpha else [colour])

    def _run(self, planes: np.ndarray) -> np.ndarray:
        """Upscale (P, C, H, W) planes tile by tile; return (P, C, H*scale, W*scale)."""
        info = self.runtime.info
        n_planes, _, height, width = planes.shape
        s, c_out = info.scale, info.out_channels
        tiles = self.plan(height, width)
        canvas = np.zeros((n_planes * c_out, height * s, width * s), np.float32)
        weight_sum = np.zeros((height * s, width * s), np.float32)
        weights: dict[tuple, np.ndarray] = {}
        jobs = [(tile, p) for tile in tiles for p in range(n_planes)]
        pending: list[np.ndarray] = []
        finished = iter(tiles)
        with tqdm(total=len(jobs), unit="tile", disable=not self.progress, leave=False) as bar:
            for start in range(0, len(jobs), self.batch):
                chunk = jobs[start:start + self.batch]
                batch = np.stack([extract_tile(planes[p], t.y, t.x, t.h, t.w, self.pad_mode)
                                  for t, p in chunk])
                pending.extend(self._infer(batch))
                while len(pending) >= n_planes:  # every plane of the next tile is back
                    tile = next(finished)
                    vh, vw = tile.valid_h * s, tile.valid_w * s
                    key = (vh, vw, tile.overlap)
                    if key not in weights:
                        weights[key] = tile_weight(vh, vw, tuple(o * s for o in tile.overlap),
                                                   self.blend)
                    tile_out = np.concatenate(pending[:n_planes])[:, :vh, :vw]
                    check_tile(tile_out, tile)
                    del pending[:n_planes]
                    accumulate(canvas, weight_sum, tile_out, weights[key], tile.y * s, tile.x * s)
                bar.update(len(chunk))
        out = normalize(canvas, weight_sum)
        return out.reshape(n_planes, c_out, height * s, width * s)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        info = self.runtime.info
        n, _, h, w = batch.shape
        out = np.asarray(self.runtime.infer(batch), dtype=np.float32)
        expected = (n, info.out_channels, h * info.scale, w * info.scale)
        if out.shape != expected:
            raise InferenceError(f"{self.runtime.name}: a {tuple(batch.shape)} batch gave "
                                 f"output {tuple(out.shape)}, expected {expected}")
        return out


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
    """Resize a (C, H, W) float32 image to ``size`` with antialiased bicubic (as Pillow does)."""
    tensor = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))[None]
    with torch.inference_mode():
        out = F.interpolate(tensor, size=size, mode="bicubic", antialias=True, align_corners=False)
    return out[0].numpy()
