"""Quantize a diffusion model's graphs behind the quality gate: an SD x4 export folder (UNet and
VAE decoder) or an SR3 denoiser (``.onnx``, or a checkpoint, exported first).

Calibration is a diffusion calibration set (``edgesr.diffusion.calibration``): the FP32
sampler (ONNX Runtime) samples ``CALIBRATION_IMAGES`` calibration crops and every graph's feeds
are recorded along the way. Per precision (``GRAPH_BUILDERS``), each graph becomes:

- fp16 (ONNX Runtime: sd-upscaler, sr3): an FP16 ``.onnx``, the overflow guard run on the
  recorded feeds (``quantize_fp16``);
- int8 (OpenVINO: sd-upscaler-openvino, sr3-openvino): an IR written beside the FP32 ``.onnx``,
  which the OpenVINO sessions compile instead of converting it, in an INT8 layout of
  ``diffusion_int8`` (``--preset``; by default full INT8 of the UNet or denoiser, INT8
  weights of the VAE decoder).

The output is a folder like the export folder (SD x4) or an ``.onnx`` file (SR3, with its
``.xml``/``.bin`` for int8). The quality report samples held-out images with the FP32 sampler
and with the artifact on its backend, same seed (an INT8 IR at the BF16 hint on CPUs with
native BF16, as it is meant to run), and compares the final images; past ``--min-psnr``
nothing is written.
"""

import shutil
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from edgesr.errors import EdgesrError
from edgesr.export.diffusion_int8 import DEFAULT_LAYOUT, LAYOUTS

#: Calibration crops sampled to record the graphs' feeds (each runs the whole sampling loop).
CALIBRATION_IMAGES = 2
#: At most this many recorded feeds per graph calibrate it, evenly spaced over the timesteps.
FEEDS_PER_GRAPH = 64


def diffusion_kind(model: str) -> str | None:
    """The model kind of ``model`` when it is a diffusion model (see ``edgesr.model_kinds``)."""
    from edgesr.model_kinds import DENOISER, SD_X4, detect_kind

    path = Path(model)
    if not path.exists():
        return None
    kind = detect_kind(path)[0].name
    return kind if kind in (SD_X4, DENOISER) else None


def _fp16(source: Path, target: Path, feeds) -> str:
    """FP16 with the overflow guard; the graph's own casts to float stay float (the converter
    would retype their outputs to float16 and leave ``to`` at float: an invalid graph)."""
    import onnx

    from edgesr.export.quantize_fp16 import convert_fp16

    graph = onnx.load(str(source), load_external_data=False).graph
    casts = [n.name for n in graph.node if n.op_type == "Cast" and n.name
             and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    report = convert_fp16(source, target, feeds, keep_fp32=casts)
    return f"{source.name} FP16, {len(report.kept_fp32)} node(s) kept in FP32"


def _int8(layout: str) -> Callable[[Path, Path, object], str]:
    """The builder of an INT8 ``layout`` (``diffusion_int8.LAYOUTS``): the FP32 graph as it
    is, and beside it the INT8 IR."""
    def build(source: Path, target: Path, feeds) -> str:
        from edgesr.export.diffusion_int8 import write_int8_ir

        _copy_graph(source, target)
        return write_int8_ir(layout, source, target, feeds)
    return build


#: (precision, INT8 layout) -> how one graph is built (source .onnx, target .onnx, its
#: FeedSet) -> a note. The INT8 layouts are ``diffusion_int8.LAYOUTS``.
GRAPH_BUILDERS: dict[tuple[str, str | None], Callable[[Path, Path, object], str]] = {
    ("fp16", None): _fp16, **{("int8", name): _int8(name) for name in LAYOUTS}}


def _copy_graph(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    data = source.with_name(source.name + ".data")
    if data.is_file():
        shutil.copyfile(data, target.with_name(target.name + ".data"))


def _target(kind: str, options) -> str:
    """The sampler backend that runs ``options.precision`` for ``kind`` (registry-driven)."""
    from edgesr.model_kinds import backends_for
    from edgesr.runtimes.registry import entry

    fits = [b for b in backends_for(kind) if options.precision in entry(b).quantizes]
    if options.backend in fits or (options.backend is None and fits):
        return options.backend or fits[0]
    takes = {b: entry(b).quantizes for b in backends_for(kind) if entry(b).quantizes}
    raise EdgesrError(f"a {kind} model quantizes to " + "; ".join(
        f"{', '.join(p)} for {b}" for b, p in takes.items())
        + f", not {options.precision} for {options.backend or 'any backend'}")


def _run_hint(precision: str) -> dict:
    """The sampler option the quality report runs an artifact at: an OpenVINO INT8 IR at the
    BF16 hint on CPUs with native BF16 (its float ops in BF16, as it is meant to run: ``-b
    <backend>:bf16``), else as the backend defaults."""
    from edgesr import cpu

    return {"precision": "bf16"} if precision == "int8" and cpu.detect().bf16 else {}


def _sampling(kind: str, options) -> dict:
    """The sampling options (``steps``, ``scale``) for the samplers of ``kind``."""
    from edgesr.model_kinds import backends_for
    from edgesr.runtimes.registry import config_class

    given = {k: v for k, v in (("steps", options.steps), ("scale", options.scale))
             if v is not None}
    known = {f.name for f in fields(config_class(backends_for(kind)[0]))}
    unknown = sorted(set(given) - known)
    if unknown:
        raise EdgesrError(f"--{unknown[0]} is not a sampling option of a {kind} model")
    return given


def quantize_diffusion(model: str, output: str | Path, options, calibration, *,
                       log: Callable[[str], None] = lambda _: None):
    """``edgesr quantize`` for a diffusion model (see the module docstring) with ``options``
    (``quantize.QuantizeOptions``) and ``calibration`` (a calibration set: its first crops are
    sampled); returns (output, report, report path, notes), ``quantize.QuantizeResult``'s
    fields."""
    from edgesr.calibration import evaluation_images
    from edgesr.diffusion.calibration import record_trajectories
    from edgesr.diffusion.sessions import onnxruntime_sessions
    from edgesr.export.quality import check_quality, quality_report
    from edgesr.fsutil import move_files, replace_dir, staging_dir
    from edgesr.model_kinds import KIND, SD_GRAPHS, SD_X4, backends_for
    from edgesr.runtimes import create_runtime

    kind = diffusion_kind(model)
    layout = (options.preset or DEFAULT_LAYOUT) if options.precision == "int8" else options.preset
    build_graph = GRAPH_BUILDERS.get((options.precision, layout))
    if build_graph is None:
        takes = ", ".join(p + (f" --preset {k}" if k else "") for p, k in GRAPH_BUILDERS)
        raise EdgesrError(f"diffusion graphs quantize to {takes}; not {options.precision}"
                          + (f" --preset {layout}" if layout else ""))
    backend, reference_backend = _target(kind, options), backends_for(kind)[0]
    sampling = _sampling(kind, options)
    source = KIND[kind].prepare(Path(model), reference_backend)
    graphs = SD_GRAPHS if kind == SD_X4 else (source.name,)
    folder = source if kind == SD_X4 else source.parent
    output = Path(output) if kind == SD_X4 else Path(output).with_suffix(".onnx")
    with create_runtime(reference_backend, source, **sampling) as reference:
        calib = list(calibration.batches(1))[:CALIBRATION_IMAGES]
        feeds = record_trajectories(
            lambda factory: type(reference.sampler)(source, reference.config, factory),
            onnxruntime_sessions("quantize", device="cpu"), calib, limit=FEEDS_PER_GRAPH)
        output.parent.mkdir(parents=True, exist_ok=True)
        with staging_dir(output) as tmp:
            built = tmp / output.name
            if kind == SD_X4:
                shutil.copytree(folder, built, ignore=lambda _, names: [
                    n for n in names if n.removesuffix(".data") in graphs])
            notes = [build_graph(
                folder / g, built / g if kind == SD_X4 else built, feeds[g]) for g in graphs]
            notes.append(f"calibrated on {sum(len(feeds[g]) for g in graphs)} recorded feeds "
                         f"of {len(calib)} sampled image(s)")
            images = evaluation_images(options.eval, count=options.eval_count,
                                       size=options.tile)
            hint = _run_hint(options.precision)
            with create_runtime(backend, built, **sampling, **hint) as candidate:
                report = quality_report(
                    reference.infer, candidate.infer, images, artifact=str(output),
                    precision=options.precision,
                    reference_name=f"FP32 {reference_backend} sampler, same seed",
                    extra={"notes": notes, "backend": backend, "min_psnr": options.min_psnr,
                           "ran": candidate.info.precision, **hint})
            log(report.summary())
            report_path = report.write_json(output.with_name(output.name + ".quality.json"))
            log(f"quality report -> {report_path}")
            check_quality(report, options.min_psnr)
            if kind == SD_X4:
                replace_dir(built, output)
            else:
                parts = [built.with_name(built.name + ".data"), built.with_suffix(".bin"),
                         built.with_suffix(".xml"), built]
                move_files((p, output.with_name(output.stem + p.name[len(built.stem):]))
                           for p in parts if p.exists())
    runs = f"{backend}:{hint['precision']}" if hint else backend
    return output, report, report_path, notes + [f"runs on --backend {runs}"]
