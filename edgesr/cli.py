"""The ``edgesr`` command line: upscale, export, info, models."""

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from edgesr import __version__
from edgesr.errors import EdgesrError


def _cmd_upscale(args: argparse.Namespace) -> int:
    from edgesr.pipeline import open_runtime, plan_outputs, upscale_many
    from edgesr.upscaler import Upscaler

    options = {"threads": args.threads} if args.threads else {}
    runtime = open_runtime(args.model, args.backend, **options)
    with runtime:
        scale = args.outscale or runtime.info.scale
        label = f"x{scale:g}"
        pairs = plan_outputs(Path(args.input), args.output and Path(args.output), label, args.ext)
        upscaler = Upscaler(runtime, tile=args.tile, overlap=args.overlap, batch=args.batch,
                            blend=args.blend, progress=not args.quiet)
        files = tqdm(total=len(pairs), unit="img", disable=args.quiet or len(pairs) < 2)

        def report(result) -> None:
            files.update()
            if result.error:
                tqdm.write(f"edgesr: failed: {result.error}", file=sys.stderr)
            elif not args.quiet:
                tqdm.write(f"{result.source} -> {result.target}")

        results = upscale_many(upscaler, pairs, report, outscale=args.outscale,
                               bit_depth=args.bit_depth)
        files.close()
    failed = [r for r in results if r.error]
    if failed and len(results) > 1:
        print(f"edgesr: {len(failed)} of {len(results)} images failed", file=sys.stderr)
    return 1 if failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import load_model
    from edgesr.pipeline import resolve_model

    descriptor = load_model(resolve_model(args.model))
    report = export_onnx(descriptor, Path(args.output), opset=args.opset)
    print(f"exported {descriptor.name} -> {report.path}")
    print(f"parity vs PyTorch: max abs diff {report.max_abs_diff:.3g}, PSNR {report.psnr:.1f} dB")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from edgesr.models import load_model
    from edgesr.pipeline import resolve_model

    path = resolve_model(args.model)
    if path.suffix == ".onnx":
        from edgesr.export.onnx_export import read_onnx_metadata

        for key, value in read_onnx_metadata(path).items():
            print(f"{key}: {value}")
        return 0
    desc = load_model(path)
    print(f"model: {desc.name}")
    print(f"file: {desc.source}")
    print(f"sha256: {desc.source_sha256}")
    print(f"scale: {desc.scale}  channels: {desc.in_channels} -> {desc.out_channels}  "
          f"size multiple: {desc.size_multiple}")
    print(f"hyperparameters: {desc.hyperparameters}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from edgesr.models.zoo import BUNDLED_MODELS, DEFAULT_MODEL, ncnn_models_dir

    folder = ncnn_models_dir()
    for name in BUNDLED_MODELS:
        mark = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}: {folder / (name + '.param')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesr", description="Export, tile and run image super-resolution models.")
    parser.add_argument("--version", action="version", version=f"edgesr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("upscale", help="upscale an image or a folder of images")
    up.add_argument("input", help="an image file or a folder of images")
    up.add_argument("-o", "--output", help="output file or folder (default: beside the input)")
    up.add_argument("-m", "--model", help="checkpoint (.pth/.safetensors), ncnn .param, .onnx, "
                    "or a bundled model name (default: realesrgan-x4plus)")
    up.add_argument("-b", "--backend", help="torch or onnxruntime (default: by model file type)")
    up.add_argument("--tile", type=int, default=256, help="tile size in input pixels; 0 = whole "
                    "image (default: 256)")
    up.add_argument("--overlap", type=int, default=32, help="tile overlap in input pixels")
    up.add_argument("--batch", type=int, default=None, help="tiles per inference call")
    up.add_argument("--blend", default=None, help="tile blending window (see docs)")
    up.add_argument("-s", "--outscale", type=float, default=None,
                    help="final scale, if other than the model's native scale")
    up.add_argument("--bit-depth", type=int, choices=(8, 16), default=None,
                    help="output bit depth (default: the input's)")
    up.add_argument("--ext", help="output extension for folder runs, e.g. .png")
    up.add_argument("--threads", type=int, default=0, help="CPU threads for the backend")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    up.set_defaults(func=_cmd_upscale)

    ex = sub.add_parser("export", help="export a model to ONNX and check parity with PyTorch")
    ex.add_argument("model", help="checkpoint, ncnn .param or bundled model name")
    ex.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    ex.add_argument("--opset", type=int, default=17)
    ex.set_defaults(func=_cmd_export)

    info = sub.add_parser("info", help="show the detected architecture of a model file")
    info.add_argument("model")
    info.set_defaults(func=_cmd_info)

    models = sub.add_parser("models", help="list the models that ship with the install")
    models.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgesr`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgesrError as exc:
        print(f"edgesr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgesr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
