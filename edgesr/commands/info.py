"""``edgesr info``: what edgesr sees in a model file, a built engine or a diffusion model folder
(see ``edgesr.artifacts``)."""

import argparse

from edgesr.commands.jsonout import add_json_option, emit


def register(sub) -> None:
    info = sub.add_parser("info", help="describe a model or engine file (checkpoint, ncnn, "
                          "ONNX, OpenVINO IR, TensorRT plan, CoreML package) or a diffusion "
                          "model folder")
    info.add_argument("model", help="file, folder or bundled model name")
    add_json_option(info, "print the description as one JSON document")
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgesr.artifacts import describe, format_description
    from edgesr.pipeline import resolve_model

    doc = describe(resolve_model(args.model))
    emit(args, doc, human="" if args.json else format_description(doc))
    return 0
