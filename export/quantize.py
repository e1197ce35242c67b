"""Quantize behind the quality gate: an FP16, INT8 or BF16 artifact that is written only if good.

``quantize`` is what ``edgesr quantize`` runs. The artifact is built in a hidden temporary
folder beside the output, compared with the FP32 model on held-out images (the report is
written beside the output as ``<output>.quality.json`` whether it passes or not), and moved
into place only if its PSNR is at least ``min_psnr``; below it, ``QualityGateError`` and no
artifact. ONNX Runtime takes fp16 and int8 (``.onnx``), OpenVINO int8 and bf16 (``.xml`` +
``.bin``). Diffusion models (an SD x4 export folder, an SR3 denoiser) go to
``quantize_diffusion``, which calibrates on sampler trajectories and gates on sampled images.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgesr.errors import EdgesrError, first_line
from edgesr.export.quality import QualityReport
from edgesr.fsutil import move_files, staging_dir

PRECISIONS = ("fp16", "int8", "bf16")
_ONE_INPUT = ("edgesr quantize takes one-input image upscalers, SD x4 export folders and SR3 "
              "denoisers, not other multi-input graphs")


@dataclass(frozen=True, kw_only=True)
class QuantizeOptions:
    """How to build and judge the artifact (the ``edgesr quantize`` flags).

    ``backend``: onnxruntime or openvino (None: openvino for bf16 or a ``.xml`` output, else
    onnxruntime). ``calib``: a ``.npz`` calibration set or an image folder (None: synthetic
    crops of ``tile`` pixels). ``method``, ``weights``: INT8 calibration and weight type on ONNX
    Runtime. ``preset``: the INT8 layout (``INT8_PRESETS``; None: sr-safe); ``exclude``: nodes
    kept in higher precision. ``target_psnr``: INT8 sensitivity search target (ONNX Runtime:
    nodes kept in FP32; OpenVINO: per-layer mixed precision, ``mixed_openvino``). ``min_psnr``: the
    gate. ``eval``, ``eval_count``: held-out images (None: synthetic). ``steps``, ``scale``:
    sampling options of a diffusion model (its sampler's defaults when None).
    """

    precision: str
    backend: str | None = None
    calib: str | None = None
    tile: int = 64
    method: str = "minmax"
    weights: str = "int8"
    preset: str | None = None
    exclude: tuple[str, ...] = ()
    target_psnr: float | None = None
    min_psnr: float | None = None
    eval: str | None = None
    eval_count: int = 4
    steps: int | None = None
    scale: int | None = None


@dataclass(frozen=True)
class QuantizeResult:
    """The artifact written (``.onnx``, or ``.xml`` beside its ``.bin``), its quality report and
    where that went, and notes on how it was built."""

    output: Path
    report: QualityReport
    report_path: Path
    notes: list[str]


def int8_layout(preset: str | None, exclude=()) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """(op types to quantize, None for all; nodes kept in float) of an INT8 preset (None:
    sr-safe) plus extra ``exclude`` nodes."""
    from edgesr.export.quantize_int8 import INT8_PRESETS

    if preset is not None and preset not in INT8_PRESETS:
        raise EdgesrError(f"--preset {preset} is a diffusion graph layout; image upscalers "
                          f"take {', '.join(INT8_PRESETS)}")
    layout = INT8_PRESETS[preset or "sr-safe"]
    return layout["op_types"], (*layout["exclude"], *exclude)


def target_backend(options: QuantizeOptions, output: Path) -> tuple[str, Path]:
    """(backend, output path) after defaults and checks: OpenVINO writes ``.xml``."""
    from edgesr.model_kinds import UPSCALER, backends_for

    if options.precision not in PRECISIONS:
        raise EdgesrError(f"unknown precision {options.precision!r}; choose from "
                          f"{', '.join(PRECISIONS)}")
    if options.preset and options.precision != "int8":
        raise EdgesrError(f"--preset is an INT8 layout; --precision {options.precision} takes "
                          "none")
    int8_layout(options.preset)  # a diffusion-only preset fails before the export
    backend = options.backend or ("openvino" if options.precision == "bf16"
                                  or output.suffix == ".xml" else "onnxruntime")
    if backend not in backends_for(UPSCALER):
        raise EdgesrError(f"--backend {backend} runs diffusion models; this model is an image "
                          "upscaler (onnxruntime or openvino)")
    if backend == "openvino":
        if options.precision == "fp16":
            raise EdgesrError("fp16 is built for onnxruntime; OpenVINO takes bf16 or int8")
        return backend, output.with_suffix(".xml")
    if options.precision == "bf16":
        raise EdgesrError("bf16 is built for openvino (--backend openvino)")
    return backend, output


def quantize(model: str, output: str | Path, options: QuantizeOptions, *,
             log: Callable[[str], None] = lambda _: None) -> QuantizeResult:
    """Build ``model`` (checkpoint, ncnn ``.param``, FP32 ``.onnx`` or bundled model name) at
    ``options.precision`` into ``output`` behind the quality gate (see the module docstring).

    ``log`` gets the report's summary line, where the report went, and the INT8 sweep's
    progress, before the gate decides.
    """
    from edgesr.calibration import evaluation_images
    from edgesr.export.quality import artifact_runner, check_quality, quality_report
    from edgesr.export.quantize_diffusion import diffusion_kind, quantize_diffusion

    if diffusion_kind(model):
        return QuantizeResult(*quantize_diffusion(model, output, options,
                                                  calibration_set(options), log=log))
    backend, output = target_backend(options, Path(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(output) as tmp:
        reference, ref_name, onnx_path = _reference_and_onnx(model, tmp)
        calib = calibration_set(options) if options.precision != "bf16" else None
        images = evaluation_images(options.eval, count=options.eval_count, size=options.tile)
        built = tmp / output.name
        notes = _build(options, backend, onnx_path, built, calib, images, reference, log)
        report = quality_report(reference, artifact_runner(built), images, artifact=str(output),
                                precision=options.precision, reference_name=ref_name,
                                extra={"notes": notes, "min_psnr": options.min_psnr})
        log(report.summary())
        report_path = report.write_json(output.with_name(output.name + ".quality.json"))
        log(f"quality report -> {report_path}")
        check_quality(report, options.min_psnr)
        parts = ([built.with_suffix(".bin")] if built.suffix == ".xml" else []) + [built]
        move_files((part, output.with_suffix(part.suffix)) for part in parts)
    return QuantizeResult(output, report, report_path, notes)


def _reference_and_onnx(model: str, tmp: Path):
    """(reference runner, its name, FP32 ONNX path) for a model argument."""
    from edgesr.export.quality import onnx_runner, torch_runner
    from edgesr.export.specs import check_external_data

    path = Path(model)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise EdgesrError(f"{path}: model file not found")
        _require_one_input(path)
        check_external_data(path)
        return onnx_runner(path), "FP32 ONNX", path
    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import load_model
    from edgesr.pipeline import resolve_model

    descriptor = load_model(resolve_model(model))
    onnx_path = export_onnx(descriptor, tmp / "fp32.onnx").path
    return torch_runner(descriptor), "FP32 PyTorch", onnx_path


def _require_one_input(path: Path) -> None:
    """Refuse an ONNX graph with other inputs than one image (an SR3 or SD x4 UNet)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError and others for a corrupt file
        raise EdgesrError(f"{path}: not a readable ONNX file ({first_line(exc)})") from None
    weights = {init.name for init in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise EdgesrError(f"{path}: {_ONE_INPUT}; this graph has inputs {inputs}")


def calibration_set(options: QuantizeOptions):
    """The calibration set ``options.calib`` names (a .npz or an image folder; None: synthetic
    crops of ``options.tile`` pixels)."""
    from edgesr.calibration import CalibrationSet, build_calibration_set

    if options.calib and Path(options.calib).suffix == ".npz":
        return CalibrationSet.load(options.calib)
    return build_calibration_set(options.calib, tile=options.tile)


def _build(options: QuantizeOptions, backend: str, onnx_path: Path, target: Path, calib, images,
           reference, log: Callable[[str], None]) -> list[str]:
    """Build the artifact at ``target``; return notes for the report."""
    from edgesr.export.quantize_fp16 import convert_fp16
    from edgesr.export.quantize_int8 import quantize_int8, sensitivity_sweep
    from edgesr.export.quantize_openvino import quantize_openvino

    op_types, exclude = (int8_layout(options.preset, options.exclude)
                         if options.precision == "int8" else (None, options.exclude))
    if backend == "openvino" and options.target_psnr is not None:
        if options.precision != "int8":
            raise EdgesrError("--target-psnr searches INT8 layouts (--precision int8)")
        from edgesr.export.mixed_openvino import mixed_search

        mixed = mixed_search(onnx_path, target, calib, images, target_psnr=options.target_psnr,
                             log=log)
        spent = "; the search stopped at its budget" if mixed.budget_spent else ""
        return [f"OpenVINO mixed: {mixed.layers - len(mixed.kept)} of {mixed.layers} "
                f"convolution(s) INT8, the rest {mixed.rest}{spent}"]
    if backend == "openvino":
        report = quantize_openvino(onnx_path, target, calib, precision=options.precision,
                                   keep=exclude, conv_only=bool(op_types))
        return [f"OpenVINO {report.precision}, inference hint {report.inference_precision}"]
    if options.precision == "fp16":
        report = convert_fp16(onnx_path, target, calib, keep_fp32=list(options.exclude))
        return [f"FP16; kept in FP32: {', '.join(report.kept_fp32) or 'none'}"]
    kwargs = {"method": options.method, "weights": options.weights, "op_types": op_types,
              "exclude": list(exclude)}
    label = (f"INT8 {options.preset or 'sr-safe'}, {options.method}, {options.weights} "
             "weights")
    if options.target_psnr is not None:
        sweep = sensitivity_sweep(onnx_path, target, calib, images,
                                  target_psnr=options.target_psnr, reference=reference, log=log,
                                  **kwargs)
        return [f"{label}, sweep kept {len(sweep.report.excluded)} node(s) in FP32"]
    report = quantize_int8(onnx_path, target, calib, **kwargs)
    return [f"{label}, {len(report.excluded)} node(s) in FP32"]
