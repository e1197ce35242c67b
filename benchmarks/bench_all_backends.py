"""Every available backend x precision on one model and one tile, beside PyTorch eager, in one run.

    python benchmarks/bench_all_backends.py [--model realesrgan-x4plus] [--tile 64] [--runs 5]

Rows: every registered backend that runs single-pass upscalers (plugins included), at every
precision its registry entry lists, opened as ``edgesr compare`` and ``edgesr bench`` open them
(``pipeline.open_runtime`` with ``backend:precision``), plus the model files ``edgesr quantize``
writes: ONNX Runtime FP16 (guarded) / INT8 (QDQ), OpenVINO INT8 (NNCF) and TensorRT INT8 (the QDQ
model). Backends with a ``tile`` option are reshaped or built for the tile. Every row runs the
same tile and reports build time, p50/p95 latency, speed ratio vs eager (eager p50 / row p50),
max abs diff and PSNR vs eager, and the precision the device really ran. Rows that cannot run
here are listed with the reason. Artifacts go to a temporary folder (the engine cache included).
"""

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgesr.calibration import build_calibration_set, evaluation_images
from edgesr.errors import BackendUnavailableError, EdgesrError, first_line
from edgesr.export.onnx_export import export_onnx
from edgesr.fidelity import psnr_from_mse
from edgesr.models import load_model
from edgesr.models.zoo import bundled_model_path
from edgesr.pipeline import open_runtime
from edgesr.profiling.timing import LatencyStats, time_calls
from edgesr.runtimes.registry import config_class, entries


def variants(checkpoint: Path, d: Path, args, calib) -> list[tuple[str, Callable]]:
    """(label, make) pairs; ``make()`` builds what the row needs and returns an inactive
    runtime, raising BackendUnavailableError when the row cannot run here."""
    fp32 = export_onnx(load_model(checkpoint), d / "fp32.onnx", check=False).path
    made: dict[str, Path] = {}

    def quantized(kind: str) -> Path:
        from edgesr.export.quantize_fp16 import convert_fp16
        from edgesr.export.quantize_int8 import quantize_int8
        from edgesr.export.quantize_openvino import quantize_openvino

        if kind not in made:
            make = {"fp16": convert_fp16, "int8": quantize_int8, "ov_int8": quantize_openvino}
            suffix = ".xml" if kind == "ov_int8" else ".onnx"
            made[kind] = make[kind](fp32, d / f"{kind}{suffix}", calib).path
        return made[kind]

    #: (backend, precision) -> the quantized model file that row runs.
    files = {("onnxruntime", "fp16"): "fp16", ("onnxruntime", "int8"): "int8",
             ("openvino", "int8"): "ov_int8", ("tensorrt", "int8"): "int8"}

    def make(name: str, precision: str):
        known = {f.name for f in dataclasses.fields(config_class(name))}
        options = {"tile": (args.tile, args.tile)} if "tile" in known else {}
        if "max_batch" in known:
            options["max_batch"] = args.batch
        model = quantized(files[name, precision]) if (name, precision) in files else checkpoint
        # a quantized file carries its precision, unless the backend also names it (TensorRT)
        variant = f"{name}:{precision}" if precision in entries()[name].precisions else name
        return open_runtime(str(model), variant, **options)

    rows = []
    for name, backend in entries().items():
        if "upscaler" not in backend.kinds:
            continue
        extra = [p for b, p in files if b == name and p not in backend.precisions]
        for precision in (*backend.precisions, *extra):
            rows.append((f"{name} {precision}", lambda n=name, p=precision: make(n, p)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="realesrgan-x4plus", help="bundled model name")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calib-count", type=int, default=8, help="crops for INT8/FP16 guards")
    parser.add_argument("--only", help="comma-separated row prefixes to run, e.g. openvino,torch")
    args = parser.parse_args()

    descriptor = load_model(bundled_model_path(args.model))
    image = evaluation_images(count=1, size=args.tile)[0]
    batch = np.ascontiguousarray(np.repeat(image.transpose(2, 0, 1)[None], args.batch, 0),
                                 np.float32)
    calib = build_calibration_set(count=args.calib_count, tile=args.tile, seed=0)
    print(f"model: {descriptor.name} ({args.model}); tile {args.tile}, batch {args.batch}, "
          f"{args.runs} timed runs after {args.warmup} warm-up")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")

    results, skipped = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGESR_CACHE"] = str(Path(tmp) / "cache")  # ONNX exports, engines
        rows = variants(Path(descriptor.source), Path(tmp), args, calib)
        wanted = tuple(args.only.split(",")) if args.only else None
        for label, make in rows:
            if wanted and not label.startswith(wanted) and label != "torch fp32":
                continue
            start = time.perf_counter()
            try:
                runtime = make()
                with runtime:
                    build = time.perf_counter() - start
                    seconds = time_calls(lambda rt=runtime: rt.infer(batch),
                                         warmup=args.warmup, runs=args.runs)
                    out, stats = runtime.infer(batch), LatencyStats.from_seconds(seconds)
                    ran = runtime.info.precision or ""
            except BackendUnavailableError as exc:
                skipped[label] = f"unavailable: {first_line(exc)}"
                continue
            except EdgesrError as exc:
                skipped[label] = f"failed: {first_line(exc)}"
                continue
            results[label] = out, stats, build, ran
            print(f"  done: {label}", flush=True)

    ref, ref_stats = results["torch fp32"][:2]
    mp = args.batch * args.tile * args.tile / 1e6
    print(f"\n{'backend precision':<18} {'build s':>8} {'p50 ms':>9} {'p95 ms':>9} "
          f"{'LR MP/s':>8} {'vs eager':>8} {'max|diff|':>10} {'PSNR dB':>8}  ran")
    for label, (out, stats, build, ran) in results.items():
        diff = np.abs(out.astype(np.float64) - ref)
        mse = float(np.mean(diff ** 2))
        psnr = psnr_from_mse(mse, cap=None)
        print(f"{label:<18} {build:8.1f} {stats.p50_ms:9.1f} {stats.p95_ms or float('nan'):9.1f} "
              f"{mp / stats.p50_ms * 1e3:8.4f} {ref_stats.p50_ms / stats.p50_ms:7.2f}x "
              f"{diff.max():10.2e} {psnr:8.1f}  {ran}")
    for label, reason in skipped.items():
        print(f"{label:<18} {reason}")


if __name__ == "__main__":
    main()
