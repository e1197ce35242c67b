"""FP16 ONNX conversion with an overflow guard.

Half precision tops out at 65504; a Real-ESRGAN activation past that becomes Inf and then NaN,
the black or NaN images users report. The guard runs the FP32 model on the calibration set and
keeps in FP32 every node that reads or writes a tensor beyond ``safety`` x 65504 (or holds such
a weight), converts the rest with onnxconverter-common, then runs the FP16 model on the same
set: any node whose FP16 output still overflows (past 65504, Inf or NaN) from inputs in range
joins the FP32 list, until none is left. (ONNX Runtime's CPU provider computes many FP16 ops in
FP32 and so hides overflow in its outputs; the guard reads every FP16 tensor's range instead.)
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgesr.calibration import CalibrationSet
from edgesr.export.quantize_common import (
    QuantizeError,
    float_tensors,
    load_onnx,
    name_nodes,
    save_onnx,
    tensor_peaks,
)

FP16_MAX = 65504.0


@dataclass(frozen=True, kw_only=True)
class Fp16Report:
    """What ``convert_fp16`` wrote: ``kept_fp32`` nodes and why (tensor -> FP32 peak)."""

    path: Path
    kept_fp32: list[str]
    overflowing: dict[str, float] = field(default_factory=dict)
    rounds: int = 0


def _convert(model: onnx.ModelProto, keep_io_types: bool, blocked: set[str]) -> onnx.ModelProto:
    from onnxconverter_common import float16

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        return float16.convert_float_to_float16(
            copy, keep_io_types=keep_io_types, node_block_list=sorted(blocked),
            max_finite_val=FP16_MAX, disable_shape_infer=False)
    except Exception as exc:
        raise QuantizeError(f"FP16 conversion failed: {exc}") from None


def _nodes_touching(model: onnx.ModelProto, tensors: set[str]) -> set[str]:
    return {n.name for n in model.graph.node if tensors & (set(n.input) | set(n.output))}


def _big_weight_nodes(model: onnx.ModelProto) -> set[str]:
    big = {i.name for i in model.graph.initializer
           if i.data_type == onnx.TensorProto.FLOAT
           and np.abs(numpy_helper.to_array(i)).max(initial=0.0) > FP16_MAX}
    return _nodes_touching(model, big)


def _culprits(fp16: onnx.ModelProto, calib: CalibrationSet, original: set[str]) -> set[str]:
    """Nodes whose FP16 outputs overflow (beyond 65504, Inf or NaN) while their inputs do not:
    original nodes by name; for a Cast the converter inserted, the original nodes reading it."""
    types = float_tensors(fp16)
    peaks = tensor_peaks(fp16, calib.batches(1), list(types))
    bad = {t for t, p in peaks.items()
           if types[t] == onnx.TensorProto.FLOAT16 and not abs(p) <= FP16_MAX}
    found: set[str] = set()
    for node in fp16.graph.node:
        if not bad & set(node.output) or bad & set(node.input):
            continue
        if node.name in original:
            found.add(node.name)
        else:
            found |= {n.name for n in fp16.graph.node
                      if n.name in original and set(node.output) & set(n.input)}
    return found


def convert_fp16(model_path: str | Path, output_path: str | Path,
                 calib: CalibrationSet | None = None, *, keep_io_types: bool = True,
                 keep_fp32: Sequence[str] = (), safety: float = 0.5,
                 max_rounds: int = 8) -> Fp16Report:
    """Convert an FP32 ONNX model to FP16 at ``output_path``, I/O kept FP32 when asked.

    With ``calib``, the overflow guard keeps offending nodes in FP32 (see module doc);
    ``keep_fp32`` names nodes to keep in FP32 regardless. Raises QuantizeError when the FP16
    model still produces Inf/NaN after ``max_rounds``.
    """
    model = name_nodes(load_onnx(model_path))
    original = {n.name for n in model.graph.node}
    unknown = set(keep_fp32) - original
    if unknown:
        raise QuantizeError(f"no node(s) named {', '.join(sorted(unknown))} in {model_path}")
    blocked = set(keep_fp32) | _big_weight_nodes(model)
    overflowing: dict[str, float] = {}
    if calib is not None:
        peaks = tensor_peaks(model, calib.batches(1))
        limit = FP16_MAX * safety
        overflowing = {t: p for t, p in peaks.items() if not np.isfinite(p) or p > limit}
        blocked |= _nodes_touching(model, set(overflowing))
    rounds = 0
    fp16 = _convert(model, keep_io_types, blocked)
    while calib is not None:
        culprits = _culprits(fp16, calib, original)
        if not culprits:
            break
        rounds += 1
        if culprits <= blocked or rounds > max_rounds:
            raise QuantizeError(f"the FP16 model still overflows after keeping {len(blocked)} "
                                f"node(s) in FP32 ({rounds} rounds)")
        blocked |= culprits
        fp16 = _convert(model, keep_io_types, blocked)
    path = save_onnx(fp16, output_path)
    return Fp16Report(path=path, kept_fp32=sorted(blocked), overflowing=overflowing,
                      rounds=rounds)
