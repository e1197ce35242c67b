"""INT8 for ONNX Runtime: static QDQ quantization, and a sweep that keeps sensitive nodes in FP32.

Weights are quantized per channel, activations per tensor (uint8) from ranges the calibration
set gives by MinMax, Entropy or Percentile. ``weights``: ``int8`` (fastest; on AVX2 CPUs without
VNNI its int16 pair sums can saturate), ``int7`` (7-bit range, no saturation, coarser) or
``uint8`` (exact, but close to FP32 speed on AVX2). ``op_types`` limits quantization to those
op types; ops outside it (and excluded nodes) then read the float tensors, not their dequantized
copies, so with ``["Conv"]`` RRDB's 0.2-scaled residual sums and concats stay in float.
``exclude`` keeps named nodes (or the ``first``/``last`` conv, or the upsampling ``tail``) in
FP32. ``INT8_PRESETS`` names measured combinations. ``sensitivity_sweep`` measures which blocks
of nodes cost the most PSNR when quantized and keeps the fewest of them in FP32 that meet a PSNR
target on held-out images.
"""

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx

from edgesr.calibration import CalibrationSet, OrtCalibrationReader
from edgesr.export.quality import Runner, onnx_runner, quality_report
from edgesr.export.quantize_common import QuantizeError, load_onnx, name_nodes, save_onnx

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
PRESETS = ("first", "last", "tail")
WEIGHTS = ("int8", "int7", "uint8")
#: Named settings for ``quantize_int8`` / ``sensitivity_sweep`` (``edgesr quantize --preset``).
#: ``sr-safe``: Conv only, first conv and upsampling tail in FP32; on Real-ESRGAN x4plus (AVX2,
#: 64 px tiles) 34.4 dB vs 27.2 dB for every op, at about 1.9x vs 2.3x PyTorch eager speed.
INT8_PRESETS = {"sr-safe": {"op_types": ("Conv",), "exclude": ("first", "tail")},
                "all-ops": {"op_types": None, "exclude": ()}}
T = TypeVar("T")
UPSAMPLING_OPS = ("Resize", "Upsample", "DepthToSpace", "ConvTranspose")


@dataclass(frozen=True, kw_only=True)
class Int8Report:
    """What ``quantize_int8`` wrote; ``op_types``: those quantized (empty: all);
    ``excluded``: nodes kept in FP32."""

    path: Path
    method: str
    per_channel: bool
    weights: str
    op_types: list[str]
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
                  method: str = "minmax", per_channel: bool = True, weights: str = "int8",
                  op_types: Sequence[str] | None = None, exclude: Sequence[str] = (),
                  percentile: float = 99.999,
                  calibration_cache: str | Path | None = None) -> Int8Report:
    """Quantize an FP32 ONNX model to INT8 QDQ at ``output_path`` (see module doc).

    ``calibration_cache``: a JSON file of tensor ranges, written on first use and reused after
    (the sweep quantizes many times from one calibration).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise QuantizeError(f"unknown calibration method {method!r}; choose {', '.join(METHODS)}")
    if weights not in WEIGHTS:
        raise QuantizeError(f"unknown weight type {weights!r}; choose {', '.join(WEIGHTS)}")
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
                reduce_range=weights == "int7", op_types_to_quantize=list(op_types or []),
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QUInt8 if weights == "uint8" else QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=getattr(CalibrationMethod, METHODS[method]),
                extra_options={"CalibPercentile": percentile,
                               "CalibTensorRangeSymmetric": False},
                calibration_cache_path=calibration_cache)
        except Exception as exc:
            raise QuantizeError(f"INT8 quantization failed: {exc}") from None
        qdq = onnx.load(out)
        if op_types:
            _float_bypass(qdq, set(op_types), set(excluded))
        path = save_onnx(qdq, output_path)
    return Int8Report(path=path, method=method, per_channel=per_channel, weights=weights,
                      op_types=list(op_types or []), excluded=excluded)


def _float_bypass(model: onnx.ModelProto, op_types: set[str], excluded: set[str]) -> None:
    """Feed nodes that are not quantized (not of ``op_types``, or excluded) the float tensor
    ONNX Runtime's QDQ pair replaced, so residual sums and concats stay exact; drop unused
    pairs. Outputs of quantized nodes keep their pair (ONNX Runtime fuses DQ-Conv-Q only)."""
    nodes = list(model.graph.node)
    quantized = {n.name for n in nodes if n.op_type in op_types and n.name not in excluded}
    made_by = {o: n.name for n in nodes for o in n.output}
    q_input = {n.output[0]: n.input[0] for n in nodes if n.op_type == "QuantizeLinear"
               and made_by.get(n.input[0]) not in quantized}
    source = {n.output[0]: q_input[n.input[0]] for n in nodes
              if n.op_type == "DequantizeLinear" and n.input[0] in q_input}
    for node in nodes:
        if node.name not in quantized:
            for i, name in enumerate(node.input):
                node.input[i] = source.get(name, name)
    graph_outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | graph_outputs
        dead = [n for n in model.graph.node
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    used |= {i.name for i in model.graph.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def quantized_nodes(qdq_path: str | Path, names: set[str]) -> list[str]:
    """Nodes of ``names`` that read a DequantizeLinear output in a QDQ model, in graph order."""
    model = onnx.load(str(qdq_path))
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model.graph.node if n.name in names and dq_out & set(n.input)]


def sensitivity_sweep(model_path: str | Path, output_path: str | Path, calib: CalibrationSet,
                      images: Sequence[np.ndarray], *, target_psnr: float,
                      reference: Runner | None = None, method: str = "minmax",
                      per_channel: bool = True, weights: str = "int8",
                      op_types: Sequence[str] | None = None, exclude: Sequence[str] = (),
                      blocks: int = 12,
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
                                   per_channel=per_channel, weights=weights, op_types=op_types,
                                   exclude=[*exclude, *extra], calibration_cache=cache)
            psnr = quality_report(reference, onnx_runner(path), images, artifact=str(path),
                                  precision="int8").psnr
            trials.append((len(report.excluded), psnr))
            log(f"int8 sweep {name}: {len(report.excluded)} node(s) in FP32 -> {psnr:.2f} dB")
            built[frozenset(extra)] = report, psnr
            return report, psnr

        best = build([], "base")
        if best[1] < target_psnr:
            names = {n.name for n in name_nodes(load_onnx(model_path)).graph.node
                     if not op_types or n.op_type in op_types}
            nodes = [n for n in quantized_nodes(best[0].path, names) if n not in best[0].excluded]
            parts = [list(p) for p in np.array_split(nodes, min(blocks, len(nodes))) if len(p)]
            gains = [build(part, f"block{i}")[1] for i, part in enumerate(parts)]
            ranked = [parts[i] for i in np.argsort(gains)[::-1]]
            best = smallest_passing(lambda m: build(sum(ranked[:m], []), f"top{m}"),
                                     len(ranked), target_psnr)
        return SweepResult(report=_move(best[0], output_path), psnr=best[1], trials=trials)


def smallest_passing(build: Callable[[int], tuple[T, float]], count: int,
                     target: float) -> tuple[T, float]:
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
    return dataclasses.replace(report, path=path)
