"""Stub runtimes for tests that need a backend but not a network: exact, fast, predictable."""

import numpy as np

from edgesr.runtimes.base import Runtime, RuntimeInfo


class NearestRuntime(Runtime):
    """Upscales by nearest-neighbour repetition: area downscaling gives the input back exactly.

    ``pattern``: optional (y0, y1, x0, x1) box, in input pixels of each batch, where stripes
    (period 2 input pixels, so they survive downscaling) are added on top.
    """

    name = "stub"

    def __init__(self, scale: int = 2, pattern: tuple[int, int, int, int] | None = None):
        super().__init__()
        self.scale = scale
        self.pattern = pattern

    def activate_impl(self) -> RuntimeInfo:
        return RuntimeInfo(scale=self.scale, in_channels=3, out_channels=3)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        s = self.scale
        out = batch.repeat(s, axis=2).repeat(s, axis=3)
        if self.pattern is not None:
            y0, y1, x0, x1 = (v * s for v in self.pattern)
            rows = np.arange(y0, y1)[:, None] // s % 2
            out[:, :, y0:y1, x0:x1] += 0.4 * rows - 0.2
        return np.clip(out, 0, 1)
