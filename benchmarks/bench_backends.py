"""PyTorch eager vs ONNX Runtime on the default model, one tile size, side by side in one run.

    python benchmarks/bench_backends.py [--model realesrgan-x4plus] [--tile 64] [--runs 5]

Both backends get the same random tile; the script prints per-backend p50/p95 latency, LR
megapixels/s, the parity of ORT's output against PyTorch, and the ORT / PyTorch speed ratio.
"""

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from edgesr.export.onnx_export import export_onnx
from edgesr.models import load_model
from edgesr.pipeline import resolve_model
from edgesr.profiling.timing import LatencyStats, time_calls
from edgesr.runtimes import create_runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file or bundled name")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    model_path = resolve_model(args.model)
    descriptor = load_model(model_path)
    rng = np.random.default_rng(0)
    batch = rng.random((args.batch, descriptor.in_channels, args.tile, args.tile), np.float32)
    print(f"model: {descriptor.name} ({model_path.name}); tile {args.tile}, batch {args.batch}")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}")

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(descriptor, onnx_path)
        results = {}
        for name, source in (("torch", descriptor), ("onnxruntime", onnx_path)):
            with create_runtime(name, source) as runtime:
                seconds = time_calls(lambda rt=runtime: rt.infer(batch), warmup=args.warmup,
                                     runs=args.runs)
                results[name] = (runtime.infer(batch), LatencyStats.from_seconds(seconds))

    mp = args.batch * args.tile * args.tile / 1e6
    print(f"{'backend':<12} {'p50 ms':>9} {'p95 ms':>9} {'LR MP/s':>9}")
    for name, (_, stats) in results.items():
        p95 = stats.p95_ms or float("nan")  # None below 20 samples
        print(f"{name:<12} {stats.p50_ms:9.1f} {p95:9.1f} {mp / stats.p50_ms * 1e3:9.4f}")
    ref, ort = results["torch"][0], results["onnxruntime"][0]
    print(f"ORT vs torch max abs diff: {np.abs(ref - ort).max():.2e}")
    ratio = results["torch"][1].p50_ms / results["onnxruntime"][1].p50_ms
    print(f"speed ratio onnxruntime / torch (p50): {ratio:.2f}x")


if __name__ == "__main__":
    main()
