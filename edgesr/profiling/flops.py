"""Model FLOPs (PyTorch's FlopCounterMode) and the measured GEMM peak of this machine.

FLOPs are counted once on a small probe input and divided by its pixel count: convolutional
SR networks cost the same per low-resolution pixel at any tile size. One multiply-add counts
as two FLOPs, as FlopCounterMode does. The GEMM peak is the best throughput of a square float32
matmul (torch and NumPy, each on its own default threads), the yardstick for "how close to the
hardware" a backend runs.
"""

import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from edgesr.models import ModelDescriptor


def flops_per_lr_pixel(descriptor: ModelDescriptor, probe: int = 32) -> float:
    """FLOPs of one forward pass per input (low-resolution) pixel, counted on a probe tile."""
    side = -(-probe // descriptor.size_multiple) * descriptor.size_multiple
    x = torch.zeros(1, descriptor.in_channels, side, side)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        descriptor.model.eval()(x)
    return counter.get_total_flops() / (side * side)


def _best_gflops(matmul, a, b, n: int, repeats: int) -> float:
    matmul(a, b)  # warm-up: thread pools, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def gemm_peak_gflops(n: int = 1024, repeats: int = 5) -> dict[str, float]:
    """Measured float32 GEMM throughput (GFLOP/s) of an n×n matmul: ``{"torch": …, "numpy": …}``."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    with torch.inference_mode():
        peak_torch = _best_gflops(torch.matmul, ta, tb, n, repeats)
    return {"torch": peak_torch, "numpy": _best_gflops(np.matmul, a, b, n, repeats)}
