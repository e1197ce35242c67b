"""Latent-space tiling for the diffusion backends (MultiDiffusion-style): run a network window by
window over overlapping windows of an NCHW array and blend the outputs into one.

Windows come from ``edgesr.tiling.plan_tiles`` (equal size, spread evenly, the edge ones
ending at the border, never padded; an axis no longer than a window is one window) and are
feathered with ``kernels.blend``'s default window at the output resolution, then normalised
by the weight sum, so a pointwise network gives the untiled result to float32 rounding.
"""

from collections.abc import Callable

import numpy as np

from edgesr.kernels.blend import DEFAULT_BLEND, accumulate, normalize, tile_weight
from edgesr.tiling import Tile, plan_tiles

#: Most windows stacked into one network call (fewer calls; memory grows with each window).
WINDOWS_PER_CALL = 4


def plan_windows(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Windows of ``tile`` overlapping by at least ``overlap`` (``tile`` 0: the whole array)."""
    return plan_tiles(height, width, tile or max(height, width), overlap if tile else 0)


def blend_windows(run: Callable[[np.ndarray, int], np.ndarray], array: np.ndarray,
                  windows: list[Tile], scale: int) -> np.ndarray:
    """``run`` over ``windows`` of ``array`` [B, C, H, W], blended: [B, C', H * scale, W * scale].

    ``run(stacked, count)`` takes ``count`` windows stacked window-major ([count * B, C, h, w])
    and returns their outputs in the same order ([count * B, C', h * scale, w * scale]). One
    window is the whole array: ``run`` on it as it is, bit for bit the untiled result.
    """
    if len(windows) == 1:
        return run(array, 1)
    batch, (height, width) = array.shape[0], array.shape[2:]
    canvas = weight_sum = None
    for first in range(0, len(windows), WINDOWS_PER_CALL):
        group = windows[first:first + WINDOWS_PER_CALL]
        stacked = np.concatenate([array[:, :, t.y:t.y + t.h, t.x:t.x + t.w] for t in group])
        outputs = np.asarray(run(stacked, len(group)), dtype=np.float32)
        for t, out in zip(group, np.split(outputs, len(group)), strict=True):
            if canvas is None:
                canvas = np.zeros((batch * out.shape[1], height * scale, width * scale),
                                  np.float32)
                weight_sum = np.zeros(canvas.shape[1:], np.float32)
            weight = tile_weight(t.h * scale, t.w * scale,
                                 tuple(o * scale for o in t.overlap), DEFAULT_BLEND)
            accumulate(canvas, weight_sum, np.ascontiguousarray(out.reshape(-1, *out.shape[2:])),
                       weight, t.y * scale, t.x * scale)
    return normalize(canvas, weight_sum).reshape(batch, -1, height * scale, width * scale)
