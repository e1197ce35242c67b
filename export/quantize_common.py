"""Helpers the quantizers share: errors, atomic ONNX writes, and per-tensor range statistics."""

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgesr.errors import BackendUnavailableError, EdgesrError
from edgesr.fsutil import write_bytes

FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)


class QuantizeError(EdgesrError):
    """A reduced-precision build failed."""


def import_nncf():
    """nncf, with its INFO lines (one per op it leaves out: thousands on a UNet) silenced; a
    missing install is one line."""
    try:
        import nncf
    except ImportError as exc:
        raise BackendUnavailableError(f"OpenVINO INT8 needs nncf ({exc}); install it with "
                                      "pip install nncf") from None
    logging.getLogger("nncf").setLevel(logging.WARNING)
    return nncf


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file, turning any failure into one QuantizeError line."""
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf and OS errors alike
        raise QuantizeError(f"{path}: cannot read the ONNX model ({exc})") from None


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name (node exclusion lists refer to names)."""
    seen = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
            while node.name in seen:
                node.name += "_"
            seen.add(node.name)
    return model


def save_onnx(model: onnx.ModelProto, path: str | Path) -> Path:
    """Serialise ``model`` to ``path``, whole or not at all (``fsutil.write_bytes``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, model.SerializeToString())
    except OSError as exc:
        raise QuantizeError(f"{path}: cannot write the model ({exc.strerror or exc})") from None
    return path


def float_tensors(model: onnx.ModelProto) -> dict[str, int]:
    """Floating-point activations (not initializers) of a model, graph order -> element type."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(inferred.graph.value_info) + list(inferred.graph.input)
             + list(inferred.graph.output)}
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    names += [o for node in model.graph.node for o in node.output]
    return {n: types[n] for n in names if types.get(n) in FLOAT_TYPES}


def tensor_peaks(model: onnx.ModelProto, batches: Iterable[np.ndarray | dict],
                 tensors: list[str] | None = None) -> dict[str, float]:
    """Largest absolute value of each float activation over ``batches`` (inf or NaN when any
    value is not finite), computed in-graph with one scalar output per tensor. A batch is the
    array of a one-input graph or, for a multi-input one (a diffusion UNet), its named feed."""
    import onnxruntime as ort

    tensors = list(float_tensors(model)) if tensors is None else tensors
    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    zero = helper.make_tensor("edgesr_peak_zero", TensorProto.FLOAT, [], [0.0])
    aug.graph.initializer.append(zero)
    outputs = {}
    for i, name in enumerate(tensors):
        p = f"edgesr_peak{i}"
        aug.graph.node.extend([
            helper.make_node("Cast", [name], [f"{p}_f"], to=TensorProto.FLOAT),
            helper.make_node("Abs", [f"{p}_f"], [f"{p}_abs"]),
            helper.make_node("ReduceMax", [f"{p}_abs"], [f"{p}_max"], keepdims=0),
            helper.make_node("Mul", [f"{p}_f", zero.name], [f"{p}_zero"]),
            helper.make_node("ReduceSum", [f"{p}_zero"], [f"{p}_nan"], keepdims=0),
            helper.make_node("Add", [f"{p}_max", f"{p}_nan"], [f"{p}_out"]),
        ])
        aug.graph.output.append(helper.make_tensor_value_info(f"{p}_out", TensorProto.FLOAT, []))
        outputs[f"{p}_out"] = name
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(aug.SerializeToString(), opts,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise QuantizeError(f"cannot run the model to collect ranges: {exc}") from None
    input_name = session.get_inputs()[0].name
    peaks = dict.fromkeys(tensors, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        for batch in batches:
            feed = batch if isinstance(batch, dict) else {input_name: batch}
            values = session.run(list(outputs), feed)
            for out_name, value in zip(outputs, values, strict=True):
                name, v = outputs[out_name], float(value)
                if np.isfinite(peaks[name]):  # once not finite, it stays so
                    peaks[name] = v if not np.isfinite(v) else max(peaks[name], v)
    return peaks
