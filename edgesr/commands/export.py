"""``edgesr export``: a model to ONNX, with the parity check against PyTorch printed."""

import argparse
from pathlib import Path


def register(sub) -> None:
    ex = sub.add_parser("export", help="export a model to ONNX and check parity with PyTorch")
    ex.add_argument("model", help="checkpoint, ncnn .param or bundled model name")
    ex.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    ex.add_argument("--opset", type=int, default=17)
    ex.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import load_model
    from edgesr.pipeline import resolve_model

    descriptor = load_model(resolve_model(args.model))
    report = export_onnx(descriptor, Path(args.output), opset=args.opset)
    print(f"exported {descriptor.name} -> {report.path}")
    print(f"parity vs PyTorch: max abs diff {report.max_abs_diff:.3g}, PSNR {report.psnr:.1f} dB")
    return 0
