"""Model FLOPs (PyTorch's FlopCounterMode, or ONNX shapes) and this machine's GEMM peak.

FLOPs are counted once on a small probe input and divided by its pixel count: convolutional
SR networks cost the same per low-resolution pixel at any tile size. One multiply-add counts
as two FLOPs, as FlopCounterMode does. The GEMM peak is the best throughput of a square float32
matmul (torch, where installed, and NumPy, each on its own default threads), the yardstick for
"how close to the hardware" a backend runs. torch is imported only where it is needed.
"""

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgesr.models import ModelDescriptor


def flops_per_lr_pixel(descriptor: "ModelDescriptor", probe: int = 32) -> float:
    """FLOPs of one forward pass per input (low-resolution) pixel, counted on a probe tile."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

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
    """Measured float32 GEMM throughput (GFLOP/s) of an n×n matmul: ``{"torch": …, "numpy": …}``
    (no "torch" where torch is not installed)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    peaks = {}
    try:
        import torch
    except ImportError:
        pass
    else:
        with torch.inference_mode():
            peaks["torch"] = _best_gflops(torch.matmul, torch.from_numpy(a), torch.from_numpy(b),
                                          n, repeats)
    return {**peaks, "numpy": _best_gflops(np.matmul, a, b, n, repeats)}


def _shapes(model) -> dict[str, list[int | None]]:
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for info in (*graph.input, *graph.value_info, *graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def onnx_flops_per_lr_pixel(path: str | Path, probe: int = 32) -> float | None:
    """FLOPs per input pixel of an ONNX model (Conv, QLinearConv, MatMul, Gemm), from shapes
    inferred for a 1×C×probe×probe input; None when a shape cannot be inferred."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        for dim, value in zip(dims, (1, dims[1].dim_value or 3, probe, probe), strict=True):
            dim.dim_value = value
        shapes = _shapes(model)
    except (OSError, ValueError, IndexError, DecodeError, onnx.shape_inference.InferenceError):
        return None  # not a 4-D image model onnx can read: the backends will say why
    total = 0
    for node in model.graph.node:
        weight = {"Conv": 1, "QLinearConv": 3}.get(node.op_type)
        if weight is not None:
            kernel, out = shapes.get(node.input[weight]), shapes.get(node.output[0])
            per_output = kernel[1:] if kernel else None
        elif node.op_type in ("MatMul", "Gemm"):
            a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
            per_output = a[-1:] if a else None
        else:
            continue
        if not out or not per_output or None in out or None in per_output:
            return None
        total += 2 * math.prod(out) * math.prod(per_output)
    return total / (probe * probe)
