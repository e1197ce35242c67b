"""Export a ModelDescriptor to ONNX, checked against PyTorch before anything is written.

Exporter: the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) followed by the
onnxscript optimizer (constant folding, Identity removal). On torch 2.13 it traces in well under
a second, emits opset 17 natively and keeps batch, height and width truly dynamic for
pixel-unshuffle (Reshape with 0/-1 dims) and interpolate (Resize with constant scales). The
dynamo exporter gives an equally dynamic graph but takes seconds per model and only emits opset
18, down-converted for 17; it stays selectable with ``exporter="dynamo"``. The weights never
enter the exporter's protobuf: ``trace_to_ir`` keeps them as PyTorch tensors behind the graph's
initializers (onnxscript's IR), so a trace costs them once plus what it constant-folds.

The graph is checked with ``onnx.checker`` and run with ONNX Runtime at a size other than the
trace size; only then is it written to a temporary file and renamed onto ``output_path``.
"""

import contextlib
import io
import itertools
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import onnxscript.optimizer
import onnxscript.rewriter
import torch
from onnx_ir.tensor_adapters import TorchTensor

from edgesr import __version__
from edgesr.errors import ExportError, first_line
from edgesr.export.specs import (
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    ExportSpec,
    encode_metadata,
    spec_for,
)
from edgesr.fidelity import psnr_from_mse
from edgesr.fsutil import write_bytes
from edgesr.models.descriptor import ModelDescriptor, OutputResize

EXPORTERS = ("torchscript", "dynamo")
#: A single-file ONNX model is one protobuf message, which cannot exceed 2 GiB.
PROTOBUF_LIMIT = 2 * 1024**3


@dataclass(frozen=True, kw_only=True)
class ExportReport:
    """What ``export_onnx`` wrote and how closely ONNX Runtime matched PyTorch.

    ``max_abs_diff``, ``psnr`` and ``parity_shape`` are None when the parity check was skipped.
    """

    path: Path
    opset: int
    exporter: str
    trace_shape: tuple[int, int, int, int]
    parity_shape: tuple[int, int, int, int] | None
    max_abs_diff: float | None
    psnr: float | None
    seconds: float
    size_bytes: int


def export_onnx(
    descriptor: ModelDescriptor,
    output_path: str | Path,
    *,
    opset: int | None = None,
    spec: ExportSpec | None = None,
    check: bool = True,
    fixed_shape: tuple[int, int, int] | None = None,
    exporter: str = "torchscript",
) -> ExportReport:
    """Export ``descriptor`` to ``output_path`` with edgesr metadata; return an ExportReport.

    ``opset`` defaults to the spec's (17); ``spec`` to the architecture's. Batch, height and
    width are dynamic unless ``fixed_shape`` = (batch, height, width) pins them. ``check`` runs
    the ONNX Runtime parity check (the ONNX checker always runs). Raises ExportError, leaving
    ``output_path`` untouched, when any step fails.
    """
    start = time.perf_counter()
    name = descriptor.name
    spec = spec or spec_for(descriptor.architecture)
    opset = spec.opset if opset is None else opset
    if opset < MIN_OPSET:
        raise ExportError(f"{name}: opset {opset} is too old; edgesr exports opset >= {MIN_OPSET}")
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    model = descriptor.model.eval()
    _check_weight_size(model, name)
    multiple = descriptor.size_multiple
    if fixed_shape is not None:
        batch, height, width = fixed_shape
        if batch < 1 or height % multiple or width % multiple or min(height, width) < 1:
            raise ExportError(f"{name}: fixed shape {fixed_shape} needs a positive batch and "
                              f"a height and width divisible by {multiple}")
        trace_shape = (batch, descriptor.in_channels, height, width)
    else:
        trace_shape = (1, descriptor.in_channels, *spec.trace_size(multiple))

    sample = _sample(trace_shape, seed=0).to(_device(model))
    dynamic_axes = None if fixed_shape else spec.dynamic_axes
    proto = trace_to_onnx(model, (sample,), opset, dynamic_axes, exporter, name)
    proto.doc_string = name
    onnx.helper.set_model_props(proto, _metadata(descriptor))
    data = proto.SerializeToString()
    del proto  # the serialized graph is what gets checked, run and written
    check_graph(data, name)

    parity_shape = max_diff = psnr = None
    if check:
        parity_shape = trace_shape if fixed_shape else (
            spec.parity_batch, descriptor.in_channels, *spec.parity_size(multiple))
        max_diff, psnr = _parity(model, data, parity_shape, spec, name)
    output_path = Path(output_path)
    write_atomic(output_path, data)
    return ExportReport(path=output_path, opset=opset, exporter=exporter, trace_shape=trace_shape,
                        parity_shape=parity_shape, max_abs_diff=max_diff, psnr=psnr,
                        seconds=time.perf_counter() - start, size_bytes=len(data))


def _metadata(descriptor: ModelDescriptor) -> dict[str, str]:
    model = descriptor.model
    resize = ({"factor": model.factor, "mode": model.mode}
              if isinstance(model, OutputResize) else None)
    return encode_metadata({
        "arch": descriptor.architecture,
        "scale": descriptor.scale,
        "in_channels": descriptor.in_channels,
        "out_channels": descriptor.out_channels,
        "size_multiple": descriptor.size_multiple,
        "source_sha256": descriptor.source_sha256,
        "version": __version__,
        "hyperparameters": descriptor.hyperparameters,
        "output_resize": resize,
    })


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers of ``model``."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _check_weight_size(model: torch.nn.Module, name: str) -> None:
    nbytes = weight_bytes(model)
    if nbytes >= PROTOBUF_LIMIT:
        raise ExportError(f"{name}: {nbytes / 2**30:.1f} GiB of weights exceed the 2 GiB limit "
                          "of a single-file ONNX model (external-data export is not supported)")


def _device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _sample(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def trace_to_onnx(model: torch.nn.Module, args: tuple[torch.Tensor, ...], opset: int,
                  dynamic_axes: dict | None, exporter: str, name: str, *,
                  input_names: tuple[str, ...] = (INPUT_NAME,),
                  output_names: tuple[str, ...] = (OUTPUT_NAME,)) -> onnx.ModelProto:
    """``trace_to_ir`` as one ONNX protobuf, weights inside."""
    return ir.to_proto(trace_to_ir(model, args, opset, dynamic_axes, exporter, name,
                                   input_names=input_names, output_names=output_names))


def trace_to_ir(model: torch.nn.Module, args: tuple[torch.Tensor, ...], opset: int,
                dynamic_axes: dict | None, exporter: str, name: str, *,
                input_names: tuple[str, ...] = (INPUT_NAME,),
                output_names: tuple[str, ...] = (OUTPUT_NAME,)) -> ir.Model:
    """Trace ``model(*args)`` into an optimized ONNX graph; ExportError (one line) on failure.

    ``dynamic_axes`` maps tensor names to {axis: dim name}; with the dynamo exporter, axes of
    the same name share one ``torch.export.Dim``. With the TorchScript exporter the weights are
    never copied: the graph's initializers wrap the module's tensors (and those the exporter
    folded), so the model takes the memory of its weights once plus what the trace folds.
    """
    names = dict(input_names=list(input_names), output_names=list(output_names),
                 opset_version=opset)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch's own deprecation notices (the TorchScript exporter, pytree internals)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            if exporter == "dynamo":
                dims: dict[str, torch.export.Dim] = {}
                shapes = dynamic_axes and tuple(
                    {axis: dims.setdefault(dim, torch.export.Dim(dim))
                     for axis, dim in dynamic_axes.get(tensor, {}).items()}
                    for tensor in input_names)
                return torch.onnx.export(model, args, dynamo=True, verbose=False,
                                         dynamic_shapes=shapes, **names).model
            buffer = io.BytesIO()
            with _weights_withheld() as weights:
                torch.onnx.export(model, args, buffer, dynamo=False, dynamic_axes=dynamic_axes,
                                  **names)
    except Exception as exc:  # the exporters raise many types; report one line
        raise ExportError(f"{name}: ONNX export failed: {first_line(exc)}") from exc
    graph = ir.serde.deserialize_model(onnx.load_from_string(buffer.getvalue()))
    _attach_weights(graph, weights, name)
    return _optimize(graph)


def _optimize(model: ir.Model) -> ir.Model:
    """The onnxscript optimizer, in place; then its default rewrite rules forget the graph they
    matched last, which they would hold (and its weights with it) until the next run."""
    onnxscript.optimizer.optimize(model)
    for rule in getattr(onnxscript.rewriter, "_DEFAULT_REWRITE_RULES", ()):
        state = getattr(getattr(rule, "_matcher", None), "__dict__", {})
        for key in ("_graph", "_current_node", "_match", "_tracer"):
            if key in state:
                state[key] = None
    return model


@contextlib.contextmanager
def _weights_withheld() -> Iterator[dict[str, torch.Tensor]]:
    """While active, the TorchScript exporter encodes graphs without their weights: they stay
    graph inputs, and the tensors go by name (in initializer order) into the dict yielded.

    Left to itself the exporter copies every weight into a protobuf, serializes it, hands the
    bytes to Python and parses them again: four copies of the weights at its peak.
    """
    graph_class = torch._C.Graph
    encode = graph_class._export_onnx
    weights: dict[str, torch.Tensor] = {}

    def encode_without_weights(graph, params, *args):
        weights.update(params)
        return encode(graph, {}, *args)

    graph_class._export_onnx = encode_without_weights
    try:
        yield weights
    finally:
        graph_class._export_onnx = encode


def _attach_weights(model: ir.Model, weights: dict[str, torch.Tensor], name: str) -> None:
    """Turn the graph inputs named in ``weights`` into initializers wrapping those tensors, in
    graph input order (the exporter's own initializer order)."""
    graph = model.graph
    missing = sorted(set(weights) - {value.name for value in graph.inputs})
    if missing:
        raise ExportError(f"{name}: ONNX export failed: the exporter's weights "
                          f"{missing[:3]} are not inputs of its graph")
    for value in [value for value in graph.inputs if value.name in weights]:
        graph.inputs.remove(value)
        value.const_value = TorchTensor(weights[value.name].detach(), name=value.name)
        graph.register_initializer(value)


def check_graph(model: onnx.ModelProto | bytes | str, name: str) -> None:
    """``onnx.checker`` (full check) on a proto, its serialized bytes or an ONNX file path
    (external data allowed)."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{name}: exported graph fails the ONNX checker: "
                          f"{first_line(exc)}") from None


def _parity(model: torch.nn.Module, data: bytes, shape: tuple[int, int, int, int],
            spec: ExportSpec, name: str) -> tuple[float, float]:
    """Max abs diff and PSNR of ONNX Runtime (CPU) against PyTorch; ExportError past tolerance."""
    x = _sample(shape, seed=1)
    with torch.no_grad():
        ref = model(x.to(_device(model))).float().cpu().numpy()
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        out = session.run(None, {INPUT_NAME: x.numpy()})[0]
    except Exception as exc:  # onnxruntime's errors are not one class
        raise ExportError(f"{name}: ONNX Runtime cannot run the export: "
                          f"{first_line(exc)}") from None
    return compare_outputs(out, ref, atol=spec.atol, min_psnr=spec.min_psnr,
                           context=f"{name}: ONNX", inputs=shape)


def compare_outputs(out: np.ndarray, ref: np.ndarray, *, atol: float, min_psnr: float,
                    context: str, inputs: object, peak: float = 1.0) -> tuple[float, float]:
    """Max abs diff and PSNR (dB, for signals spanning ``peak``) of ``out`` against ``ref``.

    Raises ExportError, one line starting with ``context`` and naming ``inputs``, when the
    shapes differ or the output is past ``atol`` or below ``min_psnr``.
    """
    if out.shape != ref.shape:
        raise ExportError(f"{context} output shape {out.shape} != PyTorch {ref.shape} "
                          f"for input {inputs}")
    diff = np.abs(out.astype(np.float64) - ref)
    max_diff = float(diff.max())
    mse = float(np.mean(diff**2))
    psnr = psnr_from_mse(mse / peak**2, cap=None)
    if not math.isfinite(max_diff) or max_diff > atol or psnr < min_psnr:
        raise ExportError(f"{context} parity check failed at input {inputs}: max abs diff "
                          f"{max_diff:.3g} (limit {atol:g}), PSNR {psnr:.1f} dB "
                          f"(minimum {min_psnr:g})")
    return max_diff, psnr


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (``fsutil.write_bytes``), making its
    folder; ExportError if it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, data)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write the ONNX file ({exc.strerror or exc})") from None
