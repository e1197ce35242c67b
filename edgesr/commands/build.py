"""``edgesr build``: a model to a backend engine (OpenVINO IR, TensorRT plan, CoreML package)
in the engine cache, optionally copied to ``-o``; stdout gets the engine's path only (or, with
``--json``, one JSON document), everything else goes to stderr.

A diffusion sampler backend (its registry entry says ``diffusion``) builds one engine per graph
of the model (``edgesr.diffusion.engines``): stdout gets each engine's path, one a line, and
``-o`` is a folder holding the model with its engines beside its graphs.
"""

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
                   "name (default: realesrgan-x4plus); for a sampler backend (sd-upscaler-*, "
                   "sr3-*) a Stable Diffusion x4 export folder, an SR3 .onnx or checkpoint")
    b.add_argument("-b", "--backend", required=True, choices=Choices(engine_backends),
                   metavar="BACKEND", help="a backend that builds engines: %(choices)s")
    b.add_argument("-p", "--precision", default="fp16",
                   help="openvino: fp32|fp16|int8 (NNCF, needs --calib); tensorrt: "
                   "fp32|fp16|int8 (from a Q/DQ .onnx); coreml: fp32|fp16|int8 (INT8 weights); "
                   "a sampler backend: a precision it runs (as -b BACKEND:PRECISION at upscale). "
                   "Default: fp16")
    b.add_argument("--calib", type=Path, help="openvino int8: calibration set (.npz from "
                   "edgesr calibrate)")
    add_layout_options(b)
    b.add_argument("-o", "--output", type=Path, help="also write the engine here (its suffix: "
                   ".xml for openvino, with its .bin and compiled model beside it; .plan; "
                   ".mlpackage); a sampler backend: a folder that runs on it (the model, each "
                   "graph's engine beside it)")
    b.add_argument("--tile", type=int, help="one fixed tile size (default: a dynamic profile); "
                   "openvino: a static IR, compiled for --device and kept beside it")
    b.add_argument("--min-tile", type=int, help="default 16 (a sampler: its min_latent)")
    b.add_argument("--opt-tile", type=int, help="default 256 (a sampler: its opt_latent)")
    b.add_argument("--max-tile", type=int, help="default 512 (a sampler: its max_latent)")
    b.add_argument("--batch", type=int, help="largest batch (tensorrt; default 1, a sampler: "
                   "its max_batch)")
    b.add_argument("--device", help="tensorrt: CUDA device index (default 0); openvino with "
                   "--tile: the device to compile for (CPU, GPU, NPU; default CPU)")
    b.add_argument("--workspace-mb", type=int, help="tensorrt builder workspace (default 2048; "
                   "a sampler: its workspace_mb)")
    b.add_argument("--cache", help="engine cache folder (default: $EDGESR_CACHE/engines)")
    add_json_option(b, "print one JSON document (path, backend, precision, profile, device, "
                    "build time; a sampler backend: the model to run and its engines) instead "
                    "of the path")
    b.set_defaults(func=run)


def profile_from(args: argparse.Namespace):
    """The ShapeProfile the tile options describe."""
    from edgesr.runtimes.engine_cache import ShapeProfile

    largest = _given(args.batch, 1)
    if largest < 1:
        raise EdgesrError(f"--batch must be 1 or more, not {largest}")
    batch = (1, largest, largest)
    if args.tile:
        hw = (args.tile, args.tile)
        return ShapeProfile(min_hw=hw, opt_hw=hw, max_hw=hw, batch=batch)
    return ShapeProfile(min_hw=(_given(args.min_tile, 16),) * 2,
                        opt_hw=(_given(args.opt_tile, 256),) * 2,
                        max_hw=(_given(args.max_tile, 512),) * 2, batch=batch)


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


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
                           device=args.device, workspace_mb=_given(args.workspace_mb, 2048),
                           calib=args.calib, keep=tuple(keep), conv_only=bool(op_types))
    check_options(args.backend, options)  # a bad --calib or option fails before the export
    if backend_entry(args.backend).diffusion:
        from edgesr.commands.build_sampler import run_sampler

        return run_sampler(args)
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

