"""The options that load a model and run it tile by tile, one home for ``edgesr upscale`` and
the commands that hold one loaded session (``edgesr.load``) for many images: ``edgesr batch``,
``edgesr watch`` and ``edgesr serve``."""

import argparse
from typing import Any

from edgesr.runtimes.registry import BACKENDS

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")


def add_session_options(parser: argparse.ArgumentParser, *, model: bool = True) -> None:
    """Add ``-m/--model`` (unless ``model`` is False: the command has its own), ``-b/--backend``,
    ``--precision``, ``--device``, ``--tile``, ``--overlap``, ``--batch``, ``--blend`` and
    ``--threads``."""
    if model:
        parser.add_argument("-m", "--model", help="checkpoint (.pth/.safetensors), ncnn "
                            ".param, .onnx, a built engine, a Stable Diffusion x4 export "
                            "folder, or a bundled model name (default: realesrgan-x4plus)")
    parser.add_argument("-b", "--backend", metavar="BACKEND[:PRECISION]",
                        help=f"{', '.join(BACKENDS)} or a plugin's (edgesr backends lists them "
                        "all; default: by model kind and file type), optionally with a "
                        "precision it runs, e.g. sd-upscaler-openvino:bf16")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="precision to run at, a backend option (default: what the model "
                        "records, else fp32); auto: the fastest the device runs natively that "
                        "keeps 40 dB PSNR against fp32 (bf16 on CPUs with AVX512_BF16/AMX, fp16 "
                        "on GPUs), checked once per model and cached. The precision that ran "
                        "is reported")
    parser.add_argument("--device", help="where the backend runs: CPU, GPU, GPU.1, NPU "
                        "(openvino), cpu, cuda (onnxruntime, torch), a CUDA index (tensorrt)")
    parser.add_argument("--tile", type=int, default=256,
                        help="tile size in input pixels; 0 = whole image (default: 256)")
    parser.add_argument("--overlap", type=int, default=32,
                        help="tile overlap in input pixels (default: 32)")
    parser.add_argument("--batch", type=int, default=None, help="tiles per inference call")
    parser.add_argument("--blend", default=None, help="tile blending window (see docs)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for the backend (default: its own choice)")


def session_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``edgesr.load``'s keyword arguments (all but the model) from the options above."""
    settings = {"backend": args.backend, "precision": args.precision, "device": args.device,
                "tile": args.tile, "overlap": args.overlap, "batch": args.batch,
                "blend": args.blend}
    if args.threads:
        settings["threads"] = args.threads
    return settings
