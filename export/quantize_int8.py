"""INT8 for ONNX Runtime: static QDQ quantization, and a sweep that keeps sensitive nodes in FP32.

Weights are quantized per channel (int8, symmetric), activations per tensor (uint8, the fast
pairing on x86 VNNI) from ranges the calibration set gives by MinMax, Entropy or Percentile.
``exclude`` keeps named nodes (or the ``first``/``last`` conv, or the upsampling ``tail``) in
FP32. ``sensitivity_sweep`` measures which blocks of nodes cost the most PSNR when quantized and
keeps the fewest of them in FP32 that meet a PSNR target on held-out images.
"""

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgesr.calibration import CalibrationSet, OrtCalibrationReader
from edgesr.export.quality import Runner, onnx_runner, quality_report
from edgesr.export.quantize_common import QuantizeError, load_onnx, name_nodes, save_onnx

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
PRESETS = ("first", "last", "tail")
UPSAMPLING_OPS = ("Resize", "Upsample", "DepthToSpace", "ConvTranspose")


@dataclass(frozen=True, kw_only=True)
class Int8Report:
    """What ``quantize_int8`` wrote; ``excluded``: nodes kept in FP32."""

    path: Path
    method: str
    per_channel: bool
    excluded: list[str]


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """The sweep's model, its PSNR, and every (nodes kept in FP32, PSNR) it built."""

    report: Int8Report
    psnr: float
    trials: list[tuple[int, float]] = field(default_factory=list)


def resolve_exclusions(model: onnx.ModelProto, exclude: Sequence[str]) -> list[str]:
    """Node names from ``exclude``: names as is, presets expanded (``first``/``last`` conv;
    ``tail``: the last conv and every node from the first upsampling op on)."""
    nodes = list(model.graph.node)
    names = {n.name for n in nodes}
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    up = next((i for i, n in enumerate(nodes) if n.op_type in UPSAMPLING_OPS), None)
    out: list[str] = []
    for item in exclude:
        if item == "first" and convs:
            out.append(convs[0])
        elif item == "last" and convs:
            out.append(convs[-1])
        elif item == "tail" and up is not None:
            out.extend([*(n.name for n in nodes[up:]), *convs[-1:]])
        elif item in names:
            out.append(item)
        else:
            raise QuantizeError(f"no node named {item!r} to exclude (presets: "
                                f"{', '.join(PRESETS)})")
    return sorted(set(out))


def quantize_int8(model_path: str | Path, output_path: str | Path, calib: CalibrationSet, *,
                  method: str = "minmax", per_channel: bool = True,
                  exclude: Sequence[str] = (), percentile: float = 99.999,
                  calibration_cache: str | Path | None = None) -> Int8Report:
    """Quantize an FP32 ONNX model to INT8 QDQ at ``output_path`` (see module doc).

    ``calibration_cache``: a JSON file of tensor ranges, written on first use and reused after
    (the sweep quantizes many times from one calibration).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise QuantizeError(f"unknown calibration method {method!r}; choose {', '.join(METHODS)}")
    model = name_nodes(load_onnx(model_path))
    excluded = resolve_exclusions(model, exclude)
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="edgesr-int8-") as tmp:
        named, out = Path(tmp) / "named.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, named)
        try:
            quantize_static(
                named, out, OrtCalibrationReader(calib, input_name),
                quant_format=QuantFormat.QDQ, per_channel=per_channel,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=getattr(CalibrationMethod, METHODS[method]),
                extra_options={"CalibPercentile": percentile,
                               "CalibTensorRangeSymmetric": False},
                calibration_cache_path=calibration_cache)
        except Exception as exc:
            raise QuantizeError(f"INT8 quantization failed: {exc}") from None
        path = save_onnx(onnx.load(out), output_path)
    return Int8Report(path=path, method=method, per_channel=per_channel, excluded=excluded)


def quantized_nodes(qdq_path: str | Path, names: set[str]) -> list[str]:
    """Nodes of ``names`` that read a DequantizeLinear output in a QDQ model, in graph order."""
    model = onnx.load(str(qdq_path))
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model.graph.node if n.name in names and dq_out & set(n.input)]


def sensitivity_sweep(model_path: str | Path, output_path: str | Path, calib: CalibrationSet,
                      images: Sequence[np.ndarray], *, target_psnr: float,
                      reference: Runner | None = None, method: str = "minmax",
                      per_channel: bool = True, exclude: Sequence[str] = (), blocks: int = 12,
                      log: Callable[[str], None] = lambda _: None) -> SweepResult:
    """Quantize to INT8, keeping the fewest node blocks in FP32 that reach ``target_psnr``
    against ``reference`` (default: the FP32 ONNX model) on held-out ``images``.

    The quantized nodes are cut into ``blocks`` runs in graph order; each block is scored by the
    PSNR its exclusion alone gains, then the best-scoring blocks are kept in FP32 together, as
    few as pass (a doubling search, then bisection). Calibration runs once.
    """
    reference = reference or onnx_runner(model_path)
    trials: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="edgesr-sweep-") as tmp:
        cache = Path(tmp) / "ranges.json"
        built: dict[frozenset, tuple[Int8Report, float]] = {}

        def build(extra: Sequence[str], name: str) -> tuple[Int8Report, float]:
            if frozenset(extra) in built:
                return built[frozenset(extra)]
            path = Path(tmp) / f"{name}.onnx"
            report = quantize_int8(model_path, path, calib, method=method,
                                   per_channel=per_channel, exclude=[*exclude, *extra],
                                   calibration_cache=cache)
            psnr = quality_report(reference, onnx_runner(path), images, artifact=str(path),
                                  precision="int8").psnr
            trials.append((len(report.excluded), psnr))
            log(f"int8 sweep {name}: {len(report.excluded)} node(s) in FP32 -> {psnr:.2f} dB")
            built[frozenset(extra)] = report, psnr
            return report, psnr

        best = build([], "base")
        if best[1] < target_psnr:
            names = {n.name for n in name_nodes(load_onnx(model_path)).graph.node}
            nodes = [n for n in quantized_nodes(best[0].path, names) if n not in best[0].excluded]
            parts = [list(p) for p in np.array_split(nodes, min(blocks, len(nodes))) if len(p)]
            gains = [build(part, f"block{i}")[1] for i, part in enumerate(parts)]
            ranked = [parts[i] for i in np.argsort(gains)[::-1]]
            best = _smallest_passing(lambda m: build(sum(ranked[:m], []), f"top{m}"),
                                     len(ranked), target_psnr)
        return SweepResult(report=_move(best[0], output_path), psnr=best[1], trials=trials)


def _smallest_passing(build: Callable[[int], tuple[Int8Report, float]], count: int,
                      target: float) -> tuple[Int8Report, float]:
    """The build of the smallest m in 1..count passing ``target``: doubling, then bisection."""
    lo, hi, m, best = 0, None, 1, None
    while hi is None or hi - lo > 1:
        m = min(m, count) if hi is None else (lo + hi) // 2
        result = build(m)
        if result[1] >= target:
            hi, best = m, result
        elif m == count:
            raise QuantizeError(f"INT8 cannot reach {target:g} dB: {result[1]:.2f} dB with all "
                                f"{count} blocks of quantized nodes in FP32")
        else:
            lo, m = m, 2 * m
    assert best is not None
    return best


def _move(report: Int8Report, output_path: str | Path) -> Int8Report:
    path = save_onnx(onnx.load(str(report.path)), output_path)
    return Int8Report(path=path, method=report.method, per_channel=report.per_channel,
                      excluded=report.excluded)
