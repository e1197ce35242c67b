"""Reduced precision on this CPU: FP32 vs FP16 vs INT8 (ONNX Runtime) vs INT8/BF16 (OpenVINO).

    python benchmarks/bench_precision.py [--model realesrgan-x4plus] [--tile 64] [--runs 3]

Every path runs the same held-out tile next to PyTorch eager FP32 in one run; the table gives
time per tile, speedup over eager, and PSNR/SSIM against eager's output on held-out images
(synthetic, degraded; never the calibration crops), and the 1-minute load average when timed
(the numbers are only honest on an idle machine). INT8 on ONNX Runtime runs every op quantized
and the ``sr-safe`` preset (convs only, first conv and upsampling tail FP32); the sweep starts
from ``sr-safe`` and keeps the blocks of convs that cost the most PSNR in FP32 until
``--target-psnr`` is met; OpenVINO rows mirror both (NNCF ``conv_only`` and ignored scope).
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import openvino as ov
import torch

from edgesr.calibration import build_calibration_set, evaluation_images
from edgesr.export.onnx_export import export_onnx
from edgesr.export.quality import (
    artifact_runner,
    openvino_runner,
    quality_report,
    torch_runner,
)
from edgesr.export.quantize_fp16 import convert_fp16
from edgesr.export.quantize_int8 import INT8_PRESETS, quantize_int8, sensitivity_sweep
from edgesr.export.quantize_openvino import quantize_openvino
from edgesr.models import load_model
from edgesr.pipeline import resolve_model


def best_ms(run, batch: np.ndarray, warmup: int, runs: int) -> float:
    """Best of ``runs`` timed calls after ``warmup`` untimed ones, in milliseconds."""
    for _ in range(warmup):
        run(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file or bundled name")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--calib-count", type=int, default=8)
    parser.add_argument("--eval-count", type=int, default=2)
    parser.add_argument("--target-psnr", type=float, default=40.0)
    parser.add_argument("--blocks", type=int, default=23,
                        help="sweep granularity (23: about one RRDB block each on x4plus)")
    args = parser.parse_args()

    descriptor = load_model(resolve_model(args.model))
    eager = torch_runner(descriptor)
    calib = build_calibration_set(count=args.calib_count, tile=args.tile, seed=0)
    images = evaluation_images(count=args.eval_count, size=args.tile)
    tile = np.ascontiguousarray(images[0].transpose(2, 0, 1)[None], np.float32)
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    print(f"model: {descriptor.name}; tile {args.tile}; calibration {len(calib)} crops; "
          f"{len(images)} held-out images")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, "
          f"openvino {ov.__version__.split('-')[0]} (CPU capabilities: {', '.join(caps)})")

    log = lambda msg: print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        fp32 = export_onnx(descriptor, d / "fp32.onnx", check=False).path
        log("exported FP32 ONNX")
        fp16 = convert_fp16(fp32, d / "fp16.onnx", calib)
        log(f"FP16: {len(fp16.kept_fp32)} node(s) kept in FP32 by the overflow guard")
        safe = INT8_PRESETS["sr-safe"]
        int8 = quantize_int8(fp32, d / "int8.onnx", calib, **INT8_PRESETS["all-ops"])
        int8_safe = quantize_int8(fp32, d / "int8_safe.onnx", calib, **safe)
        log("INT8 ORT MinMax: all ops, sr-safe")
        sweep = sensitivity_sweep(fp32, d / "int8_sweep.onnx", calib, images,
                                  target_psnr=args.target_psnr, reference=eager,
                                  blocks=args.blocks, log=log, **safe)
        kept = sweep.report.excluded
        ov_bf16 = quantize_openvino(fp32, d / "ov_bf16.xml", precision="bf16")
        ov_int8 = quantize_openvino(fp32, d / "ov_int8.xml", calib)
        ov_int8_safe = quantize_openvino(fp32, d / "ov_int8_safe.xml", calib,
                                         keep=safe["exclude"], conv_only=True)
        log("OpenVINO INT8 (NNCF): defaults, sr-safe")
        ov_int8_keep = quantize_openvino(fp32, d / "ov_int8_keep.xml", calib, keep=kept,
                                         conv_only=True)
        ov_int8_keep_bf16 = quantize_openvino(fp32, d / "ov_int8_keep_bf16.xml", calib,
                                              keep=kept, conv_only=True, bf16_rest=True)
        log("OpenVINO INT8 with the sweep's FP32 nodes kept")
        rows = [
            ("PyTorch eager FP32", eager),
            ("ONNX Runtime FP32", artifact_runner(fp32)),
            ("ONNX Runtime FP16 (guarded)", artifact_runner(fp16.path)),
            ("ONNX Runtime INT8 QDQ MinMax, all ops", artifact_runner(int8.path)),
            ("ONNX Runtime INT8 sr-safe", artifact_runner(int8_safe.path)),
            (f"ONNX Runtime INT8 sr-safe swept ({len(kept)} nodes FP32)",
             artifact_runner(sweep.report.path)),
            ("OpenVINO FP32", openvino_runner(fp32, "f32")),
            ("OpenVINO BF16 hint", artifact_runner(ov_bf16.path)),
            ("OpenVINO INT8 NNCF", artifact_runner(ov_int8.path)),
            ("OpenVINO INT8 NNCF sr-safe (convs only, first + tail FP32)",
             artifact_runner(ov_int8_safe.path)),
            (f"OpenVINO INT8 NNCF convs only, sweep's {len(kept)} nodes FP32",
             artifact_runner(ov_int8_keep.path)),
            ("  same, unquantized layers BF16", artifact_runner(ov_int8_keep_bf16.path)),
        ]
        print(f"\n| path | ms / {args.tile}px tile | x eager | PSNR vs FP32 | SSIM | load |")
        print("|---|---|---|---|---|---|")
        base_ms = None
        for name, run in rows:
            ms = best_ms(run, tile, args.warmup, args.runs)
            base_ms = base_ms or ms
            q = quality_report(eager, run, images, artifact=name, precision=name)
            psnr = "—" if run is eager else f"{q.psnr:.1f} dB"
            print(f"| {name} | {ms:.0f} | {base_ms / ms:.2f} | {psnr} | {q.ssim:.4f} | "
                  f"{os.getloadavg()[0]:.2f} |", flush=True)
        print(f"\nsweep trials (nodes in FP32, PSNR): "
              f"{', '.join(f'({k}, {p:.1f})' for k, p in sweep.trials)}")


if __name__ == "__main__":
    main()
