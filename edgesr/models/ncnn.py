"""Import ncnn .param/.bin models (the official Real-ESRGAN ones) as PyTorch models.

The graph, Split layers aside, must match layer for layer the layout ncnn's converters give
basicsr's RRDBNet (x2 / x1 with their pixel-unshuffle as a ``Reorg`` layer, as pnnx and
``edgesr export`` write it) or SRVGGNetCompact (PReLU), optionally followed by one bicubic
resize as in realesr-animevideov3 x2/x3 (the x4 net resized by 0.5 / 0.75). Each Convolution
and PReLU then maps to its basicsr state_dict key, and the model is built by the same detection
as a .pth.
``matched_layout`` (the check alone) needs no PyTorch: ``edgesr.export.ncnn_onnx`` uses it to
write the same graph as ONNX without it.
"""

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgesr.errors import CheckpointError, UnsupportedArchitectureError

from .ncnn_param import BinReader, NcnnLayer, parse_param, read_weights

if TYPE_CHECKING:
    import torch

    from edgesr.models.descriptor import ModelDescriptor

ANY = object()
NEAREST, BICUBIC = 1, 3
NO_ACT = (0, ())
LEAKY = (2, (0.2,))  # ncnn activation_type 2 = leaky ReLU, its slope in array param 10
RESIDUAL = ((0.2, 1.0),)  # Eltwise sum coefficients of basicsr's "x5 * 0.2 + x"

# Accepted parameters per layer type: id -> (required value or ANY, value when absent).
LAYER_PARAMS: dict[str, tuple[str, dict[int, tuple[object, object]]]] = {
    "Input": ("input", {0: (ANY, 0), 1: (ANY, 0), 2: (ANY, 0)}),
    "Convolution": ("conv", {
        0: (ANY, 0), 1: (3, 0), 11: (3, 3), 2: (1, 1), 12: (1, 1), 3: (1, 1), 13: (1, 1),
        4: (1, 0), 14: (1, 1), 15: (1, 1), 16: (1, 1), 5: (1, 0), 6: (ANY, 0), 8: (0, 0),
        9: (ANY, 0), 10: (ANY, ())}),
    "PReLU": ("prelu", {0: (ANY, 0)}),
    "Concat": ("concat", {0: (0, 0)}),
    "Eltwise": ("eltwise", {0: (1, 1), 1: (ANY, ())}),
    "BinaryOp": ("add", {0: (0, 0), 1: (0, 0)}),
    "Interp": ("interp", {0: (ANY, 0), 1: (ANY, 1.0), 2: (ANY, 1.0), 3: (0, 0), 4: (0, 0),
                          5: (0, 0), 6: (0, 0)}),
    "PixelShuffle": ("pixelshuffle", {0: (ANY, 1), 1: (0, 0)}),
    "Reorg": ("reorg", {0: (ANY, 1), 1: (0, 0)}),
}


@dataclass(frozen=True)
class Op:
    """A graph node: its kind, the indices of the ops it reads, and the attributes that matter.

    Ops read from a .param carry their ``layer``; ops of an expected layout carry the basicsr
    ``key`` of their weights (None for weightless ops).
    """

    kind: str
    inputs: tuple[int, ...] = ()
    attrs: tuple = ()
    layer: NcnnLayer | None = None
    key: str | None = None


def load_ncnn_model(param_path: str | Path,
                    bin_path: str | Path | None = None) -> "ModelDescriptor":
    """Load an ncnn model (text .param plus .bin, by default next to it) as a ModelDescriptor.

    fp32 and fp16 weights are read; int8 ones are refused. ``source`` is the .param path and
    ``source_sha256`` the sha256 of the .param bytes followed by the .bin bytes.
    """
    from edgesr.models.descriptor import OutputResize
    from edgesr.models.detect import model_from_state_dict

    param_path = Path(param_path)
    bin_path = param_path.with_suffix(".bin") if bin_path is None else Path(bin_path)
    layers = parse_param(param_path)
    if not bin_path.is_file():
        raise CheckpointError(f"{bin_path}: ncnn .bin not found (the weights of {param_path.name})")
    arch, graph, expected, resize = matched_layout(layers, param_path)
    reader = BinReader(bin_path)
    weights = read_weights(layers, reader, param_path)
    desc = model_from_state_dict(_state_dict(graph, expected, weights, param_path))
    if resize is not None:
        scale = desc.scale * resize
        if not scale.is_integer():
            raise UnsupportedArchitectureError(
                f"{param_path}: final resize by {resize} gives a non-integer scale {scale}")
        hp = {**desc.hyperparameters, "output_resize": resize}
        desc = replace(desc, model=OutputResize(desc.model, resize).eval(), scale=int(scale),
                       hyperparameters=hp)
    digest = hashlib.sha256(param_path.read_bytes())
    digest.update(reader.data)
    return replace(desc, source=str(param_path), source_sha256=digest.hexdigest())


def matched_layout(layers: list[NcnnLayer],
                   path: Path) -> tuple[str, list[Op], list[Op], float | None]:
    """(architecture, the graph as Ops, its expected layout, the final resize factor or None)
    of a parsed .param; UnsupportedArchitectureError unless it fits a supported layout."""
    graph = _canonical_graph(layers, path)
    arch, expected, resize = _expected_layout(graph, path)
    _match(graph, expected, arch, path)
    return arch, graph, expected, resize


def _canonical_graph(layers: list[NcnnLayer], path: Path) -> list[Op]:
    """The graph as Ops, Split layers dissolved so that each op reads its real producers."""
    producer: dict[str, int] = {}
    ops: list[Op] = []
    for layer in layers:
        if layer.type == "Split":
            if len(layer.inputs) != 1:
                raise CheckpointError(f"{path}: Split layer {layer.name!r} needs one input")
            producer.update(dict.fromkeys(layer.outputs, producer[layer.inputs[0]]))
            continue
        if layer.type not in LAYER_PARAMS:
            raise UnsupportedArchitectureError(
                f"{path}: layer {layer.name!r} has unsupported type {layer.type!r}")
        if len(layer.outputs) != 1:
            raise UnsupportedArchitectureError(
                f"{path}: layer {layer.name!r} ({layer.type}) has {len(layer.outputs)} outputs")
        kind, spec = LAYER_PARAMS[layer.type]
        params = _checked_params(layer, spec, path)
        ops.append(Op(kind, tuple(producer[b] for b in layer.inputs), _attrs(kind, params), layer))
        producer[layer.outputs[0]] = len(ops) - 1
    return ops


def _checked_params(layer: NcnnLayer, spec: dict[int, tuple[object, object]],
                    path: Path) -> dict[int, object]:
    unknown = sorted(set(layer.params) - set(spec))
    if unknown:
        raise UnsupportedArchitectureError(
            f"{path}: layer {layer.name!r} ({layer.type}) has unsupported parameter {unknown[0]}=")
    params = {key: layer.params.get(key, absent) for key, (_, absent) in spec.items()}
    for key, (required, _) in spec.items():
        if required is not ANY and params[key] != required:
            raise UnsupportedArchitectureError(
                f"{path}: layer {layer.name!r} ({layer.type}) has {key}={params[key]}, "
                f"only {key}={required} is supported")
    return params


def _attrs(kind: str, params: dict[int, object]) -> tuple:
    if kind == "conv":
        return params[9], _floats(params[10])
    if kind == "eltwise":
        return (_floats(params[1]),)
    if kind == "interp":
        return params[0], *_floats((params[1], params[2]))
    if kind in ("pixelshuffle", "reorg"):
        return (params[0],)
    return ()


def _floats(values: object) -> tuple[float, ...]:
    items = values if isinstance(values, tuple) else (values,)
    return tuple(round(float(v), 6) for v in items)


class _Layout:
    """Builds an expected op list; calling it appends an op and returns its index."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def __call__(self, kind: str, *inputs: int, attrs: tuple = (), key: str | None = None) -> int:
        self.ops.append(Op(kind, inputs, attrs, key=key))
        return len(self.ops) - 1


def _rrdbnet_layout(num_block: int, unshuffle: int | None) -> list[Op]:
    g = _Layout()
    x = g("input")
    if unshuffle is not None:  # RRDBNet x2 / x1: pixel-unshuffle by 2 / 4 first
        x = g("reorg", x, attrs=(unshuffle,))
    feat = g("conv", x, attrs=NO_ACT, key="conv_first")
    h = feat
    for b in range(num_block):
        block_in = h
        for r in (1, 2, 3):
            dense = [h]
            for c in (1, 2, 3, 4):
                x = dense[0] if c == 1 else g("concat", *dense)
                dense.append(g("conv", x, attrs=LEAKY, key=f"body.{b}.rdb{r}.conv{c}"))
            x5 = g("conv", g("concat", *dense), attrs=NO_ACT, key=f"body.{b}.rdb{r}.conv5")
            h = g("eltwise", x5, h, attrs=RESIDUAL)
        h = g("eltwise", h, block_in, attrs=RESIDUAL)
    h = g("add", feat, g("conv", h, attrs=NO_ACT, key="conv_body"))
    for n in (1, 2):
        up = g("interp", h, attrs=(NEAREST, 2.0, 2.0))
        h = g("conv", up, attrs=LEAKY, key=f"conv_up{n}")
    h = g("conv", h, attrs=LEAKY, key="conv_hr")
    g("conv", h, attrs=NO_ACT, key="conv_last")
    return g.ops


def _compact_layout(num_conv: int, upscale: int) -> list[Op]:
    g = _Layout()
    x = g("input")
    h = x
    for i in range(num_conv + 1):
        h = g("prelu", g("conv", h, attrs=NO_ACT, key=f"body.{2 * i}"), key=f"body.{2 * i + 1}")
    last = g("conv", h, attrs=NO_ACT, key=f"body.{2 * num_conv + 2}")
    shuffled = g("pixelshuffle", last, attrs=(upscale,))
    g("add", shuffled, g("interp", x, attrs=(NEAREST, float(upscale), float(upscale))))
    return g.ops


def _expected_layout(graph: list[Op], path: Path) -> tuple[str, list[Op], float | None]:
    """The architecture the graph claims, its expected layout and the final resize factor."""
    resize = None
    last = graph[-1] if graph else None
    if last and last.kind == "interp" and last.attrs[0] == BICUBIC:
        resize = last.attrs[1]
        graph = graph[:-1]
    n_conv = sum(op.kind == "conv" for op in graph)
    shuffles = [op.attrs[0] for op in graph if op.kind == "pixelshuffle"]
    if shuffles and n_conv >= 2:
        arch, expected = "SRVGGNetCompact", _compact_layout(n_conv - 2, shuffles[0])
    elif not shuffles and n_conv > 6 and (n_conv - 6) % 15 == 0:
        unshuffle = graph[1].attrs[0] if len(graph) > 1 and graph[1].kind == "reorg" else None
        arch, expected = "RRDBNet", _rrdbnet_layout((n_conv - 6) // 15, unshuffle)
    else:
        raise UnsupportedArchitectureError(
            f"{path}: graph with {n_conv} convolutions is neither RRDBNet nor SRVGGNetCompact")
    if resize is not None:
        expected.append(Op("interp", (len(expected) - 1,), (BICUBIC, resize, resize)))
    return arch, expected, resize


def _match(graph: list[Op], expected: list[Op], arch: str, path: Path) -> None:
    for got, want in zip(graph, expected, strict=False):  # lengths compared below
        if (got.kind, got.inputs, got.attrs) != (want.kind, want.inputs, want.attrs):
            raise UnsupportedArchitectureError(
                f"{path}: layer {got.layer.name!r} ({got.layer.type}) does not fit the {arch} "
                f"layout (expected {want.kind} {want.attrs} reading ops {want.inputs})")
    if len(graph) != len(expected):
        raise UnsupportedArchitectureError(
            f"{path}: graph has {len(graph)} layers besides Split, the {arch} layout has "
            f"{len(expected)}")


def _state_dict(graph: list[Op], expected: list[Op], weights: dict[str, list[np.ndarray]],
                path: Path) -> dict[str, "torch.Tensor"]:
    """basicsr-named tensors from the weights of the matched Convolution and PReLU layers."""
    import torch

    sd: dict[str, torch.Tensor] = {}
    for got, want in zip(graph, expected, strict=True):
        if want.key is None:
            continue
        blobs = weights[got.layer.name]
        if got.kind == "prelu":
            sd[f"{want.key}.weight"] = torch.from_numpy(blobs[0])
            continue
        weight, bias = blobs
        if bias.size == 0 or weight.size % (bias.size * 9):
            raise CheckpointError(
                f"{path}: layer {got.layer.name!r} weight size {weight.size} is not a multiple "
                f"of {bias.size} outputs x 3x3")
        sd[f"{want.key}.weight"] = torch.from_numpy(weight.reshape(bias.size, -1, 3, 3))
        sd[f"{want.key}.bias"] = torch.from_numpy(bias)
    return sd
