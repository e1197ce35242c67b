"""``edgesr quantize``: an FP16, INT8 or BF16 artifact, its quality report, and the PSNR gate.

The flags become ``edgesr.export.quantize.QuantizeOptions``; ``quantize`` builds the artifact in
a temporary folder, compares it with the FP32 model on held-out images (the report is printed
and written beside the output as ``<output>.quality.json``), and moves it into place only if it
passes ``--min-psnr``.
"""

import argparse


def register(sub) -> None:
    q = sub.add_parser("quantize", help="build an FP16/INT8/BF16 model with a quality report")
    q.add_argument("model", help="checkpoint, ncnn .param, FP32 .onnx or bundled model name; "
                   "or a diffusion model: an SD x4 export folder, an SR3 denoiser")
    q.add_argument("-o", "--output", required=True,
                   help="artifact to write: .onnx (ONNX Runtime) or .xml (OpenVINO IR); for an "
                   "SD x4 folder a folder, for SR3 an .onnx (with its IR for int8)")
    from edgesr.runtimes.registry import quantize_backends, quantize_precisions

    q.add_argument("--precision", choices=quantize_precisions(), required=True)
    q.add_argument("--backend", choices=quantize_backends(), default=None,
                   help="target runtime (default: openvino for bf16 or a .xml output, else "
                   "onnxruntime; diffusion models: the sampler backend that runs the precision)")
    q.add_argument("--calib", help="calibration set (.npz from edgesr calibrate) or an image "
                   "folder (default: synthetic crops)")
    q.add_argument("--tile", type=int, default=64, help="calibration crop size (default: 64)")
    q.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="INT8 activation calibration on ONNX Runtime (default: minmax)")
    add_layout_options(q)
    q.add_argument("--weights", choices=("int8", "int7", "uint8"), default="int8",
                   help="INT8 weight type on ONNX Runtime: int7/uint8 avoid AVX2 saturation "
                   "(int7 coarser, uint8 slow; default: int8)")
    q.add_argument("--target-psnr", type=float, default=None, help="INT8: search which layers "
                   "to keep out of INT8 until this PSNR is reached (ONNX Runtime: in FP32; "
                   "OpenVINO: one mixed IR, the rest in BF16 on CPUs with native BF16 that keep "
                   "the target, else FP32)")
    q.add_argument("--min-psnr", type=float, default=None,
                   help="refuse to write the artifact if its PSNR vs FP32 is lower")
    q.add_argument("--eval", help="held-out images for the quality report (default: synthetic)")
    q.add_argument("--eval-count", type=int, default=4)
    q.add_argument("--steps", type=int, help="diffusion models: sampling steps for the "
                   "calibration trajectories and the quality report (default: the sampler's)")
    q.add_argument("--scale", type=int, help="SR3 models: the factor the model upscales by")
    q.set_defaults(func=run)


def add_layout_options(parser) -> None:
    """``--preset`` and ``--exclude``, the INT8 layout; ``edgesr build`` shares them."""
    parser.add_argument("--preset", choices=("sr-safe", "all-ops", "diffusion", "weights"),
                        help="INT8 layout: sr-safe quantizes convs only and keeps the first conv "
                        "and the upsampling tail in FP32 (+4 to +7 dB on Real-ESRGAN x4plus); "
                        "all-ops quantizes every supported op (default: sr-safe). Diffusion "
                        "graphs (OpenVINO): diffusion (default) = weights and activations on "
                        "the image path, conditioning, first/last conv and attention products "
                        "in float; all-ops = every op NNCF quantizes; weights (or sr-safe) = "
                        "INT8 weights only")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="NODE",
                        help="nodes kept in higher precision: names, or first, last, tail")


def int8_layout(args: argparse.Namespace) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """(op types to quantize, None for all; nodes kept in float) of ``--preset`` and
    ``--exclude``."""
    from edgesr.export.quantize import int8_layout as layout

    return layout(args.preset, args.exclude)


def run(args: argparse.Namespace) -> int:
    from edgesr.export.quantize import QuantizeOptions, quantize

    options = QuantizeOptions(
        precision=args.precision, backend=args.backend, calib=args.calib, tile=args.tile,
        method=args.method, weights=args.weights, preset=args.preset,
        exclude=tuple(args.exclude), target_psnr=args.target_psnr, min_psnr=args.min_psnr,
        eval=args.eval, eval_count=args.eval_count, steps=args.steps, scale=args.scale)
    result = quantize(args.model, args.output, options, log=print)
    print(f"{args.precision} ({'; '.join(result.notes)}) -> {result.output}")
    return 0
