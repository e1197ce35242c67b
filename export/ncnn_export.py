"""Export a ModelDescriptor to ncnn .param/.bin with our own writer, checked against PyTorch.

The graph is written layer by layer from the PyTorch modules, in the layout ncnn's converters
give the official models (the inverse of ``edgesr.models.ncnn``): Convolution with the leaky
ReLU fused, Concat, Eltwise for basicsr's ``x * 0.2 + y``, BinaryOp add, nearest Interp,
PixelShuffle, PReLU / ReLU, and ``Reorg`` for the pixel-unshuffle of RRDBNet x2/x1; a bicubic
Interp ends a model with an output resize. A blob read by several layers goes through a Split,
as ncnn requires. Weights are fp32 (tag 0). Before anything is written, ncnn runs the graph
from a temporary folder at a size other than any fixed one and must match PyTorch within the
architecture's export tolerance; then .bin and .param move into place, each atomically.
"""

import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from edgesr.errors import ExportError, UnsupportedArchitectureError, first_line
from edgesr.export.specs import spec_for
from edgesr.fsutil import write_bytes, write_text
from edgesr.models.descriptor import ModelDescriptor, OutputResize
from edgesr.models.ncnn_param import ARRAY_KEY_BASE, MAGIC

INTERP_MODES = {"nearest": 1, "bilinear": 2, "bicubic": 3}
LEAKY_SLOPE = 0.2  # RRDBNet's leaky ReLU


@dataclass
class _Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, object] = field(default_factory=dict)
    weights: bytes = b""


class NcnnGraph:
    """A graph being written: ``add`` appends a layer and returns its output blob's name."""

    def __init__(self) -> None:
        self.layers: list[_Layer] = []

    def add(self, type_: str, *inputs: str, params: dict[int, object] | None = None,
            weights: bytes = b"") -> str:
        name = f"{type_.lower()}_{len(self.layers)}"
        blob = "data" if type_ == "Input" else f"blob{len(self.layers)}"
        self.layers.append(_Layer(type_, name, list(inputs), [blob], params or {}, weights))
        return blob

    def conv(self, x: str, conv: nn.Conv2d, slope: float | None = None) -> str:
        """A 3x3 stride-1 pad-1 Convolution, a leaky ReLU of ``slope`` fused (0: ReLU)."""
        kh, kw = conv.kernel_size
        if (conv.stride, conv.dilation, conv.groups, conv.padding) != (
                (1, 1), (1, 1), 1, (kh // 2, kw // 2)) or conv.bias is None or kh != kw:
            raise UnsupportedArchitectureError(
                f"ncnn export: convolution {conv} is not a plain same-padded one with bias")
        weight = conv.weight.detach().float().cpu().numpy()
        params: dict[int, object] = {0: conv.out_channels, 1: kw, 4: kh // 2, 5: 1,
                                     6: weight.size}
        if slope is not None:
            params.update({9: 2, 10: (slope,)} if slope else {9: 1})
        data = struct.pack("<I", 0) + weight.astype("<f4").tobytes() + _f32(conv.bias)
        return self.add("Convolution", x, params=params, weights=data)

    def activation(self, x: str, module: nn.Module) -> str:
        if isinstance(module, nn.PReLU):
            return self.add("PReLU", x, params={0: module.num_parameters},
                            weights=_f32(module.weight))
        if isinstance(module, nn.LeakyReLU):
            return self.add("ReLU", x, params={0: module.negative_slope})
        if isinstance(module, nn.ReLU):
            return self.add("ReLU", x)
        raise UnsupportedArchitectureError(f"ncnn export: unsupported activation {module}")

    def text_and_weights(self) -> tuple[str, bytes]:
        """The .param text (Split layers inserted for blobs read more than once) and .bin."""
        layers = _with_splits(self.layers)
        blobs = {b for layer in layers for b in layer.outputs}
        lines = [str(MAGIC), f"{len(layers)} {len(blobs)}"]
        for layer in layers:
            items = [layer.type, layer.name, str(len(layer.inputs)), str(len(layer.outputs)),
                     *layer.inputs, *layer.outputs]
            items += [_param_item(key, value) for key, value in layer.params.items()]
            lines.append(" ".join(items))
        return "\n".join(lines) + "\n", b"".join(layer.weights for layer in layers)


def _f32(tensor: torch.Tensor) -> bytes:
    return tensor.detach().float().cpu().numpy().astype("<f4").tobytes()


def _param_item(key: int, value: object) -> str:
    if isinstance(value, tuple):
        return f"{ARRAY_KEY_BASE - key}={len(value)}," + ",".join(f"{v:e}" for v in value)
    return f"{key}={value:e}" if isinstance(value, float) else f"{key}={value}"


def _with_splits(layers: list[_Layer]) -> list[_Layer]:
    """The layers with a Split after every blob read more than once, each reader reading a
    copy of its own (copies of the original layers: the graph can be written again)."""
    readers: dict[str, int] = {}
    for layer in layers:
        for blob in layer.inputs:
            readers[blob] = readers.get(blob, 0) + 1
    copies = {blob: [f"{blob}_splitncnn_{i}" for i in range(n)]
              for blob, n in readers.items() if n > 1}
    taken = dict.fromkeys(copies, 0)
    out: list[_Layer] = []
    for layer in layers:
        inputs = []
        for blob in layer.inputs:
            if blob in copies:
                inputs.append(copies[blob][taken[blob]])
                taken[blob] += 1
            else:
                inputs.append(blob)
        out.append(replace(layer, inputs=inputs))
        out += [_Layer("Split", f"split_{blob}", [blob], copies[blob])
                for blob in layer.outputs if blob in copies]
    return out


def _rrdbnet(g: NcnnGraph, model: nn.Module, x: str) -> str:
    if model.scale != 4:
        x = g.add("Reorg", x, params={0: {2: 2, 1: 4}[model.scale]})
    feat = g.conv(x, model.conv_first)
    h = feat
    for block in model.body:
        block_in = h
        for rdb in (block.rdb1, block.rdb2, block.rdb3):
            dense = [h]
            for conv in (rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4):
                src = dense[0] if len(dense) == 1 else g.add("Concat", *dense, params={0: 0})
                dense.append(g.conv(src, conv, LEAKY_SLOPE))
            x5 = g.conv(g.add("Concat", *dense, params={0: 0}), rdb.conv5)
            h = g.add("Eltwise", x5, h, params={0: 1, 1: (0.2, 1.0)})
        h = g.add("Eltwise", h, block_in, params={0: 1, 1: (0.2, 1.0)})
    h = g.add("BinaryOp", feat, g.conv(h, model.conv_body), params={0: 0})
    for conv in (model.conv_up1, model.conv_up2):
        h = g.conv(g.add("Interp", h, params={0: 1, 1: 2.0, 2: 2.0}), conv, LEAKY_SLOPE)
    return g.conv(g.conv(h, model.conv_hr, LEAKY_SLOPE), model.conv_last)


def _compact(g: NcnnGraph, model: nn.Module, x: str) -> str:
    h = x
    for layer in model.body:
        h = g.conv(h, layer) if isinstance(layer, nn.Conv2d) else g.activation(h, layer)
    up = float(model.upscale)
    h = g.add("PixelShuffle", h, params={0: model.upscale})
    return g.add("BinaryOp", h, g.add("Interp", x, params={0: 1, 1: up, 2: up}), params={0: 0})


#: Graph writers by architecture name (``ModelDescriptor.architecture``).
WRITERS: dict[str, Callable[[NcnnGraph, nn.Module, str], str]] = {
    "RRDBNet": _rrdbnet,
    "SRVGGNetCompact": _compact,
}


def ncnn_graph(descriptor: ModelDescriptor) -> tuple[str, bytes]:
    """(.param text, .bin bytes) of ``descriptor``; UnsupportedArchitectureError if no writer."""
    writer = WRITERS.get(descriptor.architecture)
    if writer is None:
        raise UnsupportedArchitectureError(
            f"{descriptor.name}: no ncnn writer for {descriptor.architecture}; ncnn export "
            f"supports {', '.join(WRITERS)}")
    model, resize = descriptor.model, None
    if isinstance(model, OutputResize):
        model, resize = model.model, model
    g = NcnnGraph()
    out = writer(g, model, g.add("Input"))
    if resize is not None:
        factor = float(resize.factor)
        g.add("Interp", out, params={0: INTERP_MODES[resize.mode], 1: factor, 2: factor})
    return g.text_and_weights()


@dataclass(frozen=True, kw_only=True)
class NcnnExportReport:
    """What ``export_ncnn`` wrote and how closely ncnn matched PyTorch."""

    param_path: Path
    bin_path: Path
    parity_shape: tuple[int, int, int, int]
    max_abs_diff: float
    psnr: float
    seconds: float


def export_ncnn(descriptor: ModelDescriptor, output_path: str | Path) -> NcnnExportReport:
    """Write ``descriptor`` as ncnn ``output_path`` (.param) and its .bin, after the parity
    check; ExportError, leaving both untouched, when any step fails."""
    from edgesr.export.onnx_export import compare_outputs
    from edgesr.runtimes.ncnn_runtime import NcnnRuntime

    start = time.perf_counter()
    param_path = Path(output_path)
    if param_path.suffix != ".param":
        raise ExportError(f"{param_path}: an ncnn export is written to a .param file")
    bin_path = param_path.with_suffix(".bin")
    text, weights = ncnn_graph(descriptor)
    spec = spec_for(descriptor.architecture)
    shape = (1, descriptor.in_channels, *spec.parity_size(descriptor.size_multiple))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = descriptor.model.eval()(x).float().numpy()
    with tempfile.TemporaryDirectory(prefix="edgesr-ncnn-") as folder:
        (Path(folder) / "model.param").write_text(text)
        (Path(folder) / "model.bin").write_bytes(weights)
        try:
            with NcnnRuntime(Path(folder) / "model.param") as runtime:
                out = runtime.infer(x.numpy())
        except Exception as exc:  # ncnn failing on our own graph is an export failure
            raise ExportError(f"{descriptor.name}: ncnn cannot run the export: "
                              f"{first_line(exc)}") from exc
    max_diff, psnr = compare_outputs(out, ref, atol=spec.atol, min_psnr=spec.min_psnr,
                                     context=f"{descriptor.name}: ncnn", inputs=shape)
    try:
        param_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(bin_path, weights)
        write_text(param_path, text)
    except OSError as exc:
        raise ExportError(f"{param_path}: cannot write the ncnn files "
                          f"({exc.strerror or exc})") from None
    return NcnnExportReport(param_path=param_path, bin_path=bin_path, parity_shape=shape,
                            max_abs_diff=max_diff, psnr=psnr,
                            seconds=time.perf_counter() - start)


def exported_ncnn(model_path: Path) -> Path:
    """A checkpoint's ncnn export (.param, .bin beside it), made once and cached by the
    checkpoint's sha256."""
    from edgesr.fsutil import cache_dir
    from edgesr.models import load_model

    descriptor = load_model(model_path)
    target = cache_dir() / "ncnn" / f"{model_path.stem}-{descriptor.source_sha256[:16]}.param"
    if not (target.is_file() and target.with_suffix(".bin").is_file()):
        export_ncnn(descriptor, target)
    return target
