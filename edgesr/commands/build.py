"""``edgesr build``: a model to a backend engine (OpenVINO IR, TensorRT plan, CoreML package)
in the engine cache, optionally copied to ``-o``; stdout gets the engine's path only (or, with
``--json``, one JSON document), everything else goes to stderr."""

import argparse
import time
from pathlib import Path

from edgesr.commands.jsonout import add_json_option, emit, stdout_to_stderr
from edgesr.commands.quantize import add_layout_options, int8_layout
from edgesr.errors import EdgesrError


def register(sub) -> None:
    from edgesr.runtimes.registry import Choices, engine_backends

    b = sub.add_parser("build", help="build an engine (an OpenVINO IR, TensorRT plan, CoreML "
                       "package, or a plugin backend's) into the engine cache and print its path")
    b.add_argument("model", nargs="?", help="checkpoint, ncnn .param, .onnx or bundled model "
                   "name (default: realesrgan-x4plus)")
    b.add_argument("-b", "--backend", required=True, choices=Choices(engine_backends),
                   metavar="BACKEND", help="a backend that builds engines: %(choices)s")
    b.add_argument("-p", "--precision", default="fp16",
                   help="openvino: fp32|fp16|int8 (NNCF, needs --calib); tensorrt: "
                   "fp32|fp16|int8 (from a Q/DQ .onnx); coreml: fp32|fp16|int8 (INT8 weights). "
                   "Default: fp16")
    b.add_argument("--calib", type=Path, help="openvino int8: calibration set (.npz from "
                   "edgesr calibrate)")
    add_layout_options(b)
    b.add_argument("-o", "--output", type=Path, help="also write the engine here (its suffix: "
                   ".xml for openvino, with its .bin and compiled model beside it; .plan; "
                   ".mlpackage)")
    b.add_argument("--tile", type=int, help="one fixed tile size (default: a dynamic profile); "
                   "openvino: a static IR, compiled for --device and kept beside it")
    b.add_argument("--min-tile", type=int, default=16)
    b.add_argument("--opt-tile", type=int, default=256)
    b.add_argument("--max-tile", type=int, default=512)
    b.add_argument("--batch", type=int, default=1, help="largest batch (tensorrt)")
    b.add_argument("--device", help="tensorrt: CUDA device index (default 0); openvino with "
                   "--tile: the device to compile for (CPU, GPU, NPU; default CPU)")
    b.add_argument("--workspace-mb", type=int, default=2048, help="tensorrt builder workspace")
    b.add_argument("--cache", help="engine cache folder (default: $EDGESR_CACHE/engines)")
    add_json_option(b, "print one JSON document (path, backend, precision, profile, device, "
                    "build time) instead of the path")
    b.set_defaults(func=run)


def profile_from(args: argparse.Namespace):
    """The ShapeProfile the tile options describe."""
    from edgesr.runtimes.engine_cache import ShapeProfile

    if args.batch < 1:
        raise EdgesrError(f"--batch must be 1 or more, not {args.batch}")
    batch = (1, args.batch, args.batch)
    if args.tile:
        hw = (args.tile, args.tile)
        return ShapeProfile(min_hw=hw, opt_hw=hw, max_hw=hw, batch=batch)
    return ShapeProfile(min_hw=(args.min_tile,) * 2, opt_hw=(args.opt_tile,) * 2,
                        max_hw=(args.max_tile,) * 2, batch=batch)


def check_output(output: Path | None, artifact: str) -> None:
    """Refuse ``-o`` paths that do not end in the engine's suffix."""
    suffix = Path(artifact).suffix
    if output is not None and output.suffix != suffix:
        raise EdgesrError(f"-o {output}: this backend writes a {suffix} engine; name it *{suffix}")


def run(args: argparse.Namespace) -> int:
    from edgesr.runtimes.engine_cache import BuildOptions, check_options
    from edgesr.runtimes.registry import entry as backend_entry

    # the INT8 layout applies to calibrated builds; check_options refuses it for any other
    if args.preset and not args.calib:
        raise EdgesrError("--preset is the layout of a calibrated INT8 build; it needs --calib")
    op_types, keep = int8_layout(args) if args.calib else (None, args.exclude)
    options = BuildOptions(precision=args.precision, profile=profile_from(args),
                           device=args.device, workspace_mb=args.workspace_mb, calib=args.calib,
                           keep=tuple(keep), conv_only=bool(op_types))
    check_options(args.backend, options)  # a bad --calib or option fails before the export
    spec = backend_entry(args.backend).engine
    assert spec is not None  # argparse's choices are the engine backends
    check_output(args.output, spec.artifact)
    if args.backend == "tensorrt":  # say so before spending minutes on an ONNX export
        from edgesr.runtimes.tensorrt_build import require_tensorrt

        require_tensorrt()
    with stdout_to_stderr():  # library logs (NNCF, OpenVINO, tqdm) never reach stdout
        result = _build(args, options, spec)
    verb = f"built in {result['seconds']:.1f} s" if result["built"] else "cached"
    device = "any device" if result["device"] == "any" else result["device"]
    human = f"{args.backend} {args.precision} {result['profile']} for {device} ({verb})"
    emit(args, result, human=human, plain=result["path"])
    return 0


def _build(args: argparse.Namespace, options, spec) -> dict:
    """Build (or find) the engine, copy it to ``-o``; what ``--json`` reports."""
    from edgesr.model_kinds import exported_onnx
    from edgesr.pipeline import resolve_model
    from edgesr.runtimes.engine_cache import (
        EngineCache,
        artifact_files,
        build_engine,
        copy_artifact,
    )

    source = resolve_model(args.model)
    if ".onnx" in spec.sources and source.suffix != ".onnx":
        source = exported_onnx(source)
    start = time.perf_counter()
    entry = build_engine(args.backend, source, options, cache=EngineCache(args.cache))
    seconds = time.perf_counter() - start
    files = copy_artifact(entry.artifact, args.output) if args.output else \
        artifact_files(entry.artifact)
    path = files[-1]
    return {"path": str(path), "cache_entry": str(entry.artifact), "backend": args.backend,
            "precision": args.precision, "profile": entry.key.profile,
            "device": entry.key.device, "backend_version": entry.key.backend_version,
            "built": entry.built, "seconds": round(seconds, 3) if entry.built else 0.0,
            "files": [str(f) for f in files],
            "source": str(source)}

