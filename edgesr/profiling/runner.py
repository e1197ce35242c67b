"""Run a benchmark: one model × backends × precisions × tile sizes × batch sizes, one report.

Every (backend, precision) case is opened through a factory (by default the runtime registry via
``pipeline.open_runtime``), timed per tile and batch, then run end to end over an image through
the Upscaler. The PyTorch eager FP32 baseline always runs first, and every case is also given as
a ratio to it: the backend the registry declares the baseline of the model's kind (``torch``
for an upscaler; for a diffusion model the sampler on the PyTorch modules its export recorded,
e.g. ``sd-upscaler-torch``: diffusers eager). Where PyTorch cannot run (a device with only the
runtime install, a model file torch does not read, an export whose PyTorch source is gone) the
baseline is the FP32 reference on the fastest exact backend, named as such. A case that cannot
open is kept in the report as ``unavailable`` with the reason.
Through the registry, each case runs in a child process of its own (``run_isolated``), so its
peak memory is its alone. Every case records the precision that ran, the load and other
processes' CPU use around it, and its raw samples; figures that cannot be trusted are marked
``unreliable`` with the reason (``trust``) and warned about.
"""

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from edgesr.errors import EdgesrError
from edgesr.profiling import trust
from edgesr.profiling.flops import flops_per_lr_pixel, gemm_peak_gflops, onnx_flops_per_lr_pixel
from edgesr.profiling.isolation import run_in_child
from edgesr.profiling.report import SCHEMA_NAME, SCHEMA_VERSION
from edgesr.profiling.system import system_info
from edgesr.profiling.timing import (
    InferTimer,
    LatencyStats,
    MemoryWatch,
    own_peak_rss_mb,
    time_calls,
)
from edgesr.runtimes import Runtime, config_for
from edgesr.runtimes.registry import precision_options

#: Opens the (inactive) runtime of one case; raises EdgesrError when it is unavailable.
CaseFactory = Callable[[str, str], Runtime]


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    """What to measure. ``options``: extra backend options, by backend name; ``artifacts``:
    model files of other precisions (e.g. a quantized ONNX file), by precision name.

    ``image``: the HWC float32 image of the end-to-end run (tiled with the largest tile and the
    first batch size, ``overlap`` input pixels of overlap but at most a quarter tile; default a
    synthetic 64x64 image). ``duration``: time each tile row for that many seconds (at least
    ``runs`` runs), as benchmark_app's ``-t``.
    """

    backends: tuple[str, ...]
    precisions: tuple[str, ...] = ("fp32",)
    tiles: tuple[int, ...] = (32, 64)
    batches: tuple[int, ...] = (1,)
    warmup: int = 1
    runs: int = 3
    image: np.ndarray = field(default_factory=lambda: synthetic_image(64, 64))
    overlap: int = 8
    downsample: str = "bicubic"
    threads: int = 0
    options: dict[str, dict] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    duration: float | None = None


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A reproducible HWC float32 test image: smooth gradients, waves, hard edges and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1),
                    0.5 + 0.4 * np.sin(xx * 0.35) * np.cos(yy * 0.2)], axis=2)
    for _ in range(4):
        y0, x0 = rng.integers(0, max(height, width), 2) % (height, width)
        img[y0:y0 + height // 4, x0:x0 + width // 4] = rng.random(3, dtype=np.float32)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def backend_options(backend: str, precision: str, settings: BenchSettings) -> dict:
    """Backend options for one case, from its Config fields; EdgesrError if it cannot run it.

    A precision with its own model file (``settings.artifacts``) needs no option; any other
    becomes the backend's precision option, as ``backend:precision`` does everywhere
    (``registry.precision_options``).
    """
    known = {f.name for f in dataclasses.fields(config_for(backend))}
    options = dict(settings.options.get(backend, {}))
    if precision not in settings.artifacts:
        options.update(precision_options(backend, precision))
    if settings.threads and "threads" in known:
        options.setdefault("threads", settings.threads)
    return options


def registry_factory(model: str | None, settings: BenchSettings) -> CaseFactory:
    """The default factory: ``pipeline.open_runtime`` with options from ``backend_options``."""
    from edgesr.pipeline import open_runtime

    def open_case(backend: str, precision: str) -> Runtime:
        options = backend_options(backend, precision, settings)
        return open_runtime(settings.artifacts.get(precision, model), backend, **options)

    return open_case


def _rows(runtime: Runtime, settings: BenchSettings, flops: float | None,
          peak: float, asked: str) -> list[dict]:
    info = runtime.info
    rng = np.random.default_rng(0)
    tiles = [info.fixed_hw[0]] if info.fixed_hw else settings.tiles
    rows = []
    for tile in tiles:
        side = -(-tile // info.size_multiple) * info.size_multiple
        hw = info.fixed_hw or (side, side)
        for batch in settings.batches:
            if info.max_batch is not None and batch > info.max_batch:
                continue
            x = rng.random((batch, info.in_channels, *hw), dtype=np.float32)
            stats = LatencyStats.from_seconds(time_calls(
                lambda x=x: runtime.infer(x), warmup=settings.warmup, runs=settings.runs,
                duration=settings.duration))
            pixels = batch * hw[0] * hw[1]
            gflops = flops * pixels / stats.p50_ms / 1e6 if flops else None
            row = {"tile": hw[0], "batch": batch, **dataclasses.asdict(stats),
                   "tile_ms": stats.p50_ms / batch, "lr_mps": pixels / stats.p50_ms / 1e3,
                   "gflops": gflops, "peak_fraction": gflops / peak if gflops else None,
                   "speedup": None}
            ran = trust.effective_precision(runtime) or asked
            row["unreliable"] = "; ".join(trust.row_reasons(row, peak, ran)) or None
            rows.append(row)
    return rows


def _end_to_end(runtime: Runtime, settings: BenchSettings, image: np.ndarray
                ) -> tuple[dict, np.ndarray]:
    """One timed Upscaler run over ``image``: (e2e dict, upscaled image)."""
    from edgesr.upscaler import Upscaler

    timer = InferTimer(runtime).activate()
    fixed = runtime.info.fixed_hw
    tile, batch = fixed[0] if fixed else max(settings.tiles), settings.batches[0]
    overlap = min(settings.overlap, tile // 4)  # the Upscaler needs overlap < tile
    upscaler = Upscaler(timer, tile=tile, overlap=overlap, batch=batch)
    if settings.warmup:  # one tile's worth, so first-call costs stay out of the timing
        upscaler.upscale(image[:tile, :tile])
    timer.reset()
    stages = getattr(runtime, "stage_timer", None)  # a diffusion sampler's time per graph
    if stages is not None:
        stages.reset()
    start = time.perf_counter()
    output = upscaler.upscale(image)
    seconds = time.perf_counter() - start
    outside = max(0.0, seconds - timer.seconds)
    height, width = image.shape[:2]
    return {"height": height, "width": width, "tile": tile, "overlap": overlap,
            "batch": upscaler.batch, "runs": 1, "seconds": seconds,
            "infer_seconds": timer.seconds, "outside_infer_seconds": outside,
            "outside_infer_share": outside / seconds, "lr_mps": height * width / seconds / 1e6,
            "speedup": None, "stages": stages.report() if stages is not None else None}, output


def empty_case(backend: str, precision: str, options: dict, reason: str | None) -> dict:
    """A case with nothing measured: unavailable for ``reason``, or ok to fill in (None)."""
    return {"backend": backend, "precision": precision, "options": options,
            "status": "ok" if reason is None else "unavailable", "reason": reason,
            "effective_precision": None, "load": None, "unreliable": None,
            "peak_rss_mb": None, "startup_rss_mb": None, "rss_ratio": None, "gpu_peak_mb": None,
            "consistency_psnr_db": None, "baseline_psnr_db": None,
            "rows": [], "e2e": None}


def run_case(open_case: CaseFactory, backend: str, precision: str, settings: BenchSettings,
             image: np.ndarray, flops: float | None, peak: float
             ) -> tuple[dict, np.ndarray | None]:
    """Measure one (backend, precision): (case dict, end-to-end output or None)."""
    from edgesr.fidelity import consistency_score

    options = settings.options.get(backend, {})
    try:
        with trust.CpuWatch() as cpu, MemoryWatch() as memory, \
                open_case(backend, precision) as runtime:
            rows = _rows(runtime, settings, flops, peak, precision)
            e2e, output = _end_to_end(runtime, settings, image)
            ran = trust.effective_precision(runtime)
    except EdgesrError as exc:
        return empty_case(backend, precision, options, str(exc)), None
    case = empty_case(backend, precision, options, None)
    reasons = [cpu.reason()] if cpu.reason() else []
    if ran and ran != precision and precision not in settings.artifacts:
        reasons.append(f"asked for {precision}, the backend ran {ran}")
    if not np.isfinite(output).all():
        reasons.append("the output holds NaN or infinite values")
    case.update(rows=rows, e2e=e2e, peak_rss_mb=memory.peak_rss_mb,
                gpu_peak_mb=memory.gpu_peak_mb, effective_precision=ran, load=cpu.as_dict(),
                unreliable="; ".join(reasons) or None,
                consistency_psnr_db=_finite(consistency_score(image, output, settings.downsample)))
    return case, output


def _finite(value: float) -> float | None:
    """``value``, or None (JSON has no NaN) when it is not finite."""
    return value if np.isfinite(value) else None


def run_isolated(model: str | None, backend: str, precision: str, settings: BenchSettings,
                 flops: float | None, peak: float) -> tuple[dict, np.ndarray | None]:
    """Measure one case in a spawned child process of its own (``isolation.run_in_child``):
    (case dict, end-to-end output or None).

    Its ``peak_rss_mb`` is the child's RSS high-water mark (Linux ``VmHWM``: exact, and of the
    child alone; ``getrusage``'s ``ru_maxrss`` is not, since Linux carries the parent's peak
    over ``exec``), elsewhere ``MemoryWatch``'s sampled peak. ``startup_rss_mb`` is the child's
    RSS once the interpreter, edgesr and the backend's library are imported, before the model
    is opened. A child that raises or dies gives an ``unavailable`` case, and so, without
    starting a process, does a case whose options already fail here (unknown backend, library
    missing, no such precision).
    """
    options = settings.options.get(backend, {})
    try:
        backend_options(backend, precision, settings)
    except EdgesrError as exc:
        return empty_case(backend, precision, options, str(exc)), None
    result, reason = run_in_child(_measure_in_child,
                                  (model, backend, precision, settings, flops, peak),
                                  name=f"edgesr-bench-{backend}-{precision}")
    if reason is None:
        return result
    return empty_case(backend, precision, options, reason), None


def _measure_in_child(model: str | None, backend: str, precision: str, settings: BenchSettings,
                      flops: float | None, peak: float) -> tuple[dict, np.ndarray | None]:
    """``run_isolated``'s child: open the case through the registry and measure it."""
    import psutil

    backend_options(backend, precision, settings)  # imports the backend
    startup = psutil.Process().memory_info().rss / (1 << 20)
    case, output = run_case(registry_factory(model, settings), backend, precision, settings,
                            settings.image, flops, peak)
    if case["status"] == "ok":
        case.update(startup_rss_mb=startup, peak_rss_mb=own_peak_rss_mb() or case["peak_rss_mb"])
    return case, output


def _add_ratios(case: dict, base: dict, output: np.ndarray | None,
                base_output: np.ndarray | None) -> None:
    """Fill a case's ratios to the baseline case (in place)."""
    from edgesr.fidelity import psnr

    base_rows = {(r["tile"], r["batch"]): r for r in base["rows"]}
    for row in case["rows"]:
        ref = base_rows.get((row["tile"], row["batch"]))
        row["speedup"] = ref["p50_ms"] / row["p50_ms"] if ref else None
        if ref and ref is not row and ref.get("unreliable"):
            row["unreliable"] = "; ".join(filter(None, (
                row.get("unreliable"), "the baseline's row it is compared with is unreliable")))
    if case["e2e"] and base["e2e"]:
        case["e2e"]["speedup"] = base["e2e"]["seconds"] / case["e2e"]["seconds"]
    if case["peak_rss_mb"] and base["peak_rss_mb"]:
        case["rss_ratio"] = case["peak_rss_mb"] / base["peak_rss_mb"]
    if output is not None and base_output is not None and output.shape == base_output.shape:
        case["baseline_psnr_db"] = _finite(psnr(output, base_output))


def _model_info(model: str | None) -> tuple[dict, float | None]:
    """(model dict, FLOPs per LR pixel or None) for a model argument."""
    from edgesr.model_kinds import detect_kind
    from edgesr.pipeline import resolve_model

    path = resolve_model(model)
    if not path.exists():
        raise EdgesrError(f"{path}: model file not found")
    info = {"source": str(path), "name": path.name, "scale": 0, "flops_per_lr_pixel": None}
    if path.is_dir() or path.suffix == ".onnx" or _has_torch():  # a checkpoint's needs torch
        info["kind"] = detect_kind(path)[0].name
    if path.is_dir():  # an exported diffusion model or a CoreML package: no one graph to count
        return info, None
    if path.suffix == ".onnx":
        info["flops_per_lr_pixel"] = onnx_flops_per_lr_pixel(path)
        return info, info["flops_per_lr_pixel"]
    if not _has_torch():  # the runtime install only: the backends read the file themselves
        return info, None
    from edgesr.models import load_model

    try:
        descriptor = load_model(path)
    except EdgesrError:  # an engine file: no graph to count FLOPs on
        return info, None
    flops = flops_per_lr_pixel(descriptor)
    info.update(name=descriptor.name, scale=descriptor.scale, flops_per_lr_pixel=flops)
    return info, flops


def run_bench(model: str | None, settings: BenchSettings, *,
              open_case: CaseFactory | None = None, model_info: dict | None = None,
              isolate: bool = True,
              log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> dict:
    """Benchmark every backend × precision (baseline first); return the report dict.

    ``open_case`` and ``model_info`` replace the registry factory and the model's loaded
    description (tests pass stubs). Through the registry, each case runs in its own child
    process unless ``isolate`` is false; a given ``open_case`` always runs in this process.
    """
    if model_info is None:
        model_info, flops = _model_info(model)
    else:
        flops = model_info["flops_per_lr_pixel"]
    reference = baseline_case(model_info)
    settings = with_baseline_options(settings, reference[0])
    isolate = isolate and open_case is None
    open_case = open_case or registry_factory(model, settings)
    load_at_start = trust.loadavg()
    warnings = [f"the machine is busy: {busy}; figures may be unreliable"
                for busy in [trust.busy_machine(load_at_start)] if busy]
    log("measuring the GEMM peak")
    gemm = gemm_peak_gflops()
    peak = max(gemm.values())
    combos = [reference] + [(b, p) for b in settings.backends for p in settings.precisions
                            if (b, p) != reference]
    cases, outputs = [], []
    for backend, precision in combos:
        log(f"benchmarking {backend} {precision}")
        if isolate:
            case, output = run_isolated(model, backend, precision, settings, flops, peak)
        else:
            case, output = run_case(open_case, backend, precision, settings, settings.image,
                                    flops, peak)
        cases.append(case)
        outputs.append(output)
    base, baseline = 0, {"backend": reference[0], "precision": reference[1], "reason": None}
    if cases[0]["status"] != "ok":
        exact = trust.exact_baseline(cases[1:])
        if exact is None:
            cases[0]["reason"] += ("; for the PyTorch baseline and its ratios, give the FP32 "
                                   "checkpoint as the model and other files as -p NAME=FILE")
        else:
            base = exact + 1
            baseline = {"backend": cases[base]["backend"], "precision": "fp32",
                        "reason": "PyTorch cannot run here: the FP32 reference on the fastest "
                        "exact backend"}
    for case, output in zip(cases, outputs, strict=True):
        _add_ratios(case, cases[base], output, outputs[base])
    warnings += _warnings(cases)
    for warning in warnings:
        log(f"warning: {warning}")
    done = [out for out in outputs if out is not None]
    if not model_info["scale"] and done:  # an ONNX model: read the scale off an output
        model_info = dict(model_info, scale=done[0].shape[0] // settings.image.shape[0])
    return {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "system": system_info(), "model": model_info,
        "settings": {"backends": list(settings.backends), "precisions": list(settings.precisions),
                     "tiles": list(settings.tiles), "batches": list(settings.batches),
                     "warmup": settings.warmup, "runs": settings.runs,
                     "image": list(settings.image.shape[:2]), "overlap": settings.overlap,
                     "downsample": settings.downsample, "threads": settings.threads,
                     "artifacts": dict(settings.artifacts), "isolate": isolate,
                     "duration": settings.duration},
        "gemm_peak_gflops": gemm, "baseline": baseline, "load_at_start": load_at_start,
        "warnings": warnings, "cases": cases,
    }


def baseline_case(model_info: dict) -> tuple[str, str]:
    """(backend, "fp32"): the PyTorch eager reference the registry declares for the model's
    kind (an upscaler's when the kind is not known)."""
    from edgesr.model_kinds import UPSCALER, baseline_backend

    return baseline_backend(model_info.get("kind", UPSCALER)) or "torch", "fp32"


def with_baseline_options(settings: BenchSettings, backend: str) -> BenchSettings:
    """``settings`` where a diffusion baseline samples as the cases it is compared with: unless
    ``-O`` names it, it takes the sampling options (steps, seed, ...: the fields its Config has,
    threads aside) of the first benchmarked backend given some."""
    from edgesr.runtimes.registry import config_class, entry

    if backend in settings.options or not entry(backend).diffusion:
        return settings
    try:
        known = {f.name for f in dataclasses.fields(config_class(backend))} - {"threads"}
    except EdgesrError:  # its library is missing: its case says so
        return settings
    given = next((settings.options[b] for b in settings.backends if settings.options.get(b)), {})
    shared = {key: value for key, value in given.items() if key in known}
    return (dataclasses.replace(settings, options={**settings.options, backend: shared})
            if shared else settings)


def _warnings(cases: list[dict]) -> list[str]:
    """One line per unreliable case and row."""
    lines = []
    for case in cases:
        label = f"{case['backend']} {case['precision']}"
        if case["unreliable"]:
            lines.append(f"{label}: unreliable: {case['unreliable']}")
        lines += [f"{label} tile {row['tile']} batch {row['batch']}: unreliable: "
                  f"{row['unreliable']}" for row in case["rows"] if row["unreliable"]]
    return lines


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True
