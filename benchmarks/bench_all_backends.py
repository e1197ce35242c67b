"""Every available backend x precision on one model and one tile, beside PyTorch eager, in one run.

    python benchmarks/bench_all_backends.py [--model realesrgan-x4plus] [--tile 64] [--runs 5]

Rows: PyTorch eager FP32 (the baseline); ONNX Runtime FP32 / FP16 (guarded) / INT8 (QDQ);
OpenVINO FP32 / FP16 (FP16-compressed IR, f16 hint) / BF16 hint / INT8 (NNCF), each reshaped to
the tile; TensorRT FP32 / FP16 / INT8 (the QDQ model); CoreML FP16 / INT8 weights. Every row runs
the same tile and reports build time, p50/p95 latency, speed ratio vs eager (eager p50 / row
p50), max abs diff and PSNR vs eager, and the precision the device really ran. Rows that cannot
run here are listed with the reason. Artifacts go to a temporary folder (engine cache included).
"""

import argparse
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
from edgesr.profiling.timing import LatencyStats, time_calls
from edgesr.runtimes import create_runtime
from edgesr.runtimes.engine_cache import BuildOptions, EngineCache, ShapeProfile, build_engine


def variants(descriptor, d: Path, args, calib) -> list[tuple[str, Callable]]:
    """(label, make) pairs; ``make()`` builds what the row needs and returns an inactive
    runtime, raising BackendUnavailableError when the row cannot run here."""
    cache = EngineCache(d / "engines")
    tile = (args.tile, args.tile)
    fp32 = export_onnx(descriptor, d / "fp32.onnx", check=False).path
    model_file = Path(descriptor.source)
    artifacts: dict[str, Path] = {}

    def quantized(kind: str) -> Path:
        from edgesr.export.quantize_fp16 import convert_fp16
        from edgesr.export.quantize_int8 import quantize_int8

        if kind not in artifacts:
            make = convert_fp16 if kind == "fp16" else quantize_int8
            artifacts[kind] = make(fp32, d / f"{kind}.onnx", calib).path
        return artifacts[kind]

    def openvino(precision: str):
        if precision == "int8":
            from edgesr.export.quantize_openvino import quantize_openvino

            xml = quantize_openvino(fp32, d / "ov_int8.xml", calib).path
            return create_runtime("openvino", xml, tile=tile)
        weights = "fp16" if precision == "fp16" else "fp32"
        xml = build_engine("openvino", fp32, BuildOptions(precision=weights), cache=cache)
        return create_runtime("openvino", xml.artifact, precision=precision, tile=tile)

    def tensorrt(precision: str):
        source = quantized("int8") if precision == "int8" else fp32
        return create_runtime("tensorrt", source, precision=precision, tile=tile,
                              max_batch=args.batch)

    def coreml(precision: str):
        from edgesr.runtimes.coreml_runtime import unavailable_reason

        if unavailable_reason():  # don't convert a package nothing here can run
            raise BackendUnavailableError(f"coreml: {unavailable_reason()}")
        options = BuildOptions(precision=precision, profile=ShapeProfile.fixed(args.tile))
        package = build_engine("coreml", model_file, options, cache=cache).artifact
        return create_runtime("coreml", package)

    rows = [("onnxruntime fp32", lambda: create_runtime("onnxruntime", fp32))]
    rows += [(f"onnxruntime {p}", lambda p=p: create_runtime("onnxruntime", quantized(p)))
             for p in ("fp16", "int8")]
    rows += [(f"openvino {p}", lambda p=p: openvino(p)) for p in ("fp32", "fp16", "bf16", "int8")]
    rows += [(f"tensorrt {p}", lambda p=p: tensorrt(p)) for p in ("fp32", "fp16", "int8")]
    rows += [(f"coreml {p}", lambda p=p: coreml(p)) for p in ("fp16", "int8")]
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
        rows = [("torch fp32", lambda: create_runtime("torch", descriptor))]
        rows += variants(descriptor, Path(tmp), args, calib)
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
                    ran = getattr(runtime, "effective_precision", None) or ""
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
        print(f"{label:<18} {build:8.1f} {stats.p50_ms:9.1f} {stats.p95_ms:9.1f} "
              f"{mp / stats.p50_ms * 1e3:8.4f} {ref_stats.p50_ms / stats.p50_ms:7.2f}x "
              f"{diff.max():10.2e} {psnr:8.1f}  {ran}")
    for label, reason in skipped.items():
        print(f"{label:<18} {reason}")


if __name__ == "__main__":
    main()
