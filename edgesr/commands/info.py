"""``edgesr info``: what edgesr detects in a model file."""

import argparse


def register(sub) -> None:
    info = sub.add_parser("info", help="show the detected architecture of a model file")
    info.add_argument("model", help="model file or bundled model name")
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
