"""``edgesr quantize``: an FP16, INT8 or BF16 artifact, its quality report, and the PSNR gate.

The artifact is built in a temporary folder, compared with the FP32 model on held-out images
(the report is printed and written beside the output as ``<output>.quality.json``), and moved
into place only if it passes ``--min-psnr``.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

from edgesr.errors import EdgesrError


def register(sub) -> None:
    q = sub.add_parser("quantize", help="build an FP16/INT8/BF16 model with a quality report")
    q.add_argument("model", help="checkpoint, ncnn .param, FP32 .onnx or bundled model name")
    q.add_argument("-o", "--output", required=True,
                   help="artifact to write: .onnx (ONNX Runtime) or .xml (OpenVINO IR)")
    q.add_argument("--precision", choices=("fp16", "int8", "bf16"), required=True)
    q.add_argument("--backend", choices=("onnxruntime", "openvino"), default=None,
                   help="target runtime (default: openvino for bf16 or a .xml output, else "
                   "onnxruntime)")
    q.add_argument("--calib", help="calibration set (.npz from edgesr calibrate) or an image "
                   "folder (default: synthetic crops)")
    q.add_argument("--tile", type=int, default=64, help="calibration crop size (default: 64)")
    q.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="INT8 activation calibration on ONNX Runtime (default: minmax)")
    add_layout_options(q)
    q.add_argument("--weights", choices=("int8", "int7", "uint8"), default="int8",
                   help="INT8 weight type on ONNX Runtime: int7/uint8 avoid AVX2 saturation "
                   "(int7 coarser, uint8 slow; default: int8)")
    q.add_argument("--target-psnr", type=float, default=None, help="INT8: sweep which nodes "
                   "to keep in FP32 until this PSNR is reached")
    q.add_argument("--min-psnr", type=float, default=None,
                   help="refuse to write the artifact if its PSNR vs FP32 is lower")
    q.add_argument("--eval", help="held-out images for the quality report (default: synthetic)")
    q.add_argument("--eval-count", type=int, default=4)
    q.set_defaults(func=run)


def add_layout_options(parser) -> None:
    """``--preset`` and ``--exclude``, the INT8 layout; ``edgesr build`` shares them."""
    parser.add_argument("--preset", choices=("sr-safe", "all-ops"),
                        help="INT8 layout: sr-safe quantizes convs only and keeps the first conv "
                        "and the upsampling tail in FP32 (+4 to +7 dB on Real-ESRGAN x4plus); "
                        "all-ops quantizes every supported op (default: sr-safe)")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="NODE",
                        help="nodes kept in higher precision: names, or first, last, tail")


def int8_layout(args: argparse.Namespace) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """(op types to quantize, None for all; nodes kept in float) of ``--preset`` and
    ``--exclude``."""
    from edgesr.export.quantize_int8 import INT8_PRESETS

    preset = INT8_PRESETS[preset_name(args)]
    return preset["op_types"], (*preset["exclude"], *args.exclude)


def preset_name(args: argparse.Namespace) -> str:
    """The INT8 layout preset asked for, ``sr-safe`` by default."""
    return args.preset or "sr-safe"


def _reference_and_onnx(model: str, tmp: Path):
    """(reference runner, its name, FP32 ONNX path) for a model argument."""
    from edgesr.export.onnx_export import check_external_data
    from edgesr.export.quality import onnx_runner, torch_runner

    path = Path(model)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise EdgesrError(f"{path}: model file not found")
        _require_one_input(path)
        check_external_data(path)
        return onnx_runner(path), "FP32 ONNX", path
    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import load_model
    from edgesr.models.detect import DENOISERS
    from edgesr.pipeline import resolve_model

    descriptor = load_model(resolve_model(model))
    if descriptor.architecture in DENOISERS:
        raise EdgesrError(f"{path}: {_NOT_DIFFUSION} ({descriptor.architecture} is a denoiser)")
    onnx_path = export_onnx(descriptor, tmp / "fp32.onnx").path
    return torch_runner(descriptor), "FP32 PyTorch", onnx_path


_NOT_DIFFUSION = ("edgesr quantize takes one-input image upscalers, not yet diffusion graphs "
                  "(x, noise level -> noise)")


def _require_one_input(path: Path) -> None:
    """Refuse an ONNX graph with other inputs than one image (an SR3 or SD x4 UNet)."""
    import onnx

    from edgesr.export.onnx_export import first_line

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError and others for a corrupt file
        raise EdgesrError(f"{path}: not a readable ONNX file ({first_line(exc)})") from None
    weights = {init.name for init in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise EdgesrError(f"{path}: {_NOT_DIFFUSION}; this graph has inputs {inputs}")


def _calibration(args: argparse.Namespace):
    from edgesr.calibration import CalibrationSet, build_calibration_set

    if args.calib and Path(args.calib).suffix == ".npz":
        return CalibrationSet.load(args.calib)
    return build_calibration_set(args.calib, tile=args.tile)


def _build(args, onnx_path: Path, target: Path, calib, images, reference) -> list[str]:
    """Build the artifact at ``target``; return notes for the report."""
    from edgesr.export.quantize_fp16 import convert_fp16
    from edgesr.export.quantize_int8 import quantize_int8, sensitivity_sweep
    from edgesr.export.quantize_openvino import quantize_openvino

    op_types, exclude = int8_layout(args) if args.precision == "int8" else (None, args.exclude)
    if args.backend == "openvino":
        report = quantize_openvino(onnx_path, target, calib, precision=args.precision,
                                   keep=exclude, conv_only=bool(op_types))
        return [f"OpenVINO {report.precision}, inference hint {report.inference_precision}"]
    if args.precision == "fp16":
        report = convert_fp16(onnx_path, target, calib, keep_fp32=args.exclude)
        return [f"FP16; kept in FP32: {', '.join(report.kept_fp32) or 'none'}"]
    options = {"method": args.method, "weights": args.weights, "op_types": op_types,
               "exclude": list(exclude)}
    label = f"INT8 {preset_name(args)}, {args.method}, {args.weights} weights"
    if args.target_psnr is not None:
        sweep = sensitivity_sweep(onnx_path, target, calib, images, target_psnr=args.target_psnr,
                                  reference=reference, log=print, **options)
        return [f"{label}, sweep kept {len(sweep.report.excluded)} node(s) in FP32"]
    report = quantize_int8(onnx_path, target, calib, **options)
    return [f"{label}, {len(report.excluded)} node(s) in FP32"]


def run(args: argparse.Namespace) -> int:
    from edgesr.calibration import evaluation_images
    from edgesr.export.quality import artifact_runner, check_quality, quality_report

    output = Path(args.output)
    if args.preset and args.precision != "int8":
        raise EdgesrError(f"--preset is an INT8 layout; --precision {args.precision} takes none")
    if args.backend is None:
        args.backend = "openvino" if args.precision == "bf16" or output.suffix == ".xml" \
            else "onnxruntime"
    if args.backend == "openvino":
        if args.precision == "fp16":
            raise EdgesrError("fp16 is built for onnxruntime; OpenVINO takes bf16 or int8")
        output = output.with_suffix(".xml")
    elif args.precision == "bf16":
        raise EdgesrError("bf16 is built for openvino (--backend openvino)")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edgesr-quantize-", dir=output.parent) as tmp:
        tmp = Path(tmp)
        reference, ref_name, onnx_path = _reference_and_onnx(args.model, tmp)
        calib = _calibration(args) if args.precision != "bf16" else None
        images = evaluation_images(args.eval, count=args.eval_count, size=args.tile)
        built = tmp / output.name
        notes = _build(args, onnx_path, built, calib, images, reference)
        report = quality_report(reference, artifact_runner(built), images, artifact=str(output),
                                precision=args.precision, reference_name=ref_name,
                                extra={"notes": notes, "min_psnr": args.min_psnr})
        print(report.summary())
        json_path = report.write_json(output.with_name(output.name + ".quality.json"))
        print(f"quality report -> {json_path}")
        check_quality(report, args.min_psnr)
        for part in ([built.with_suffix(".bin")] if built.suffix == ".xml" else []) + [built]:
            shutil.move(str(part), output.with_suffix(part.suffix))
    print(f"{args.precision} ({'; '.join(notes)}) -> {output}")
    return 0
