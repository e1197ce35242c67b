"""ncnn .param/.bin models to ONNX without PyTorch: the bundled models on the lean install.

The .param must fit the layouts the PyTorch importer accepts (``edgesr.models.ncnn``:
RRDBNet, SRVGGNetCompact with PReLU, an optional final bicubic resize); each ncnn layer then
becomes the ONNX node the PyTorch export of the imported model gives (Conv + LeakyRelu, PRelu,
Concat, Mul/Add for Eltwise, Resize, DepthToSpace; RRDBNet x2/x1's pixel-unshuffle ``Reorg`` as
SpaceToDepth + a channel Gather), with the same names, dynamic axes, opset
and edgesr metadata, so the ONNX Runtime backend cannot tell the two apart (their outputs
agree within 1e-5 on the five bundled models: tests/export/test_ncnn_onnx.py).
``onnx_for_ncnn`` converts once, cached by the sha256 of the .param and .bin bytes.
"""

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgesr import __version__
from edgesr.errors import CheckpointError, ExportError, first_line
from edgesr.export.specs import INPUT_NAME, OUTPUT_NAME, encode_metadata, spec_for
from edgesr.fsutil import cache_dir, write_bytes
from edgesr.models.ncnn import BICUBIC, NEAREST, Op, matched_layout
from edgesr.models.ncnn_param import BinReader, parse_param, read_weights

#: Part of the cache key: bump when the graph this module writes changes.
CONVERTER_VERSION = 2
#: ONNX IR version of opset 17 (what the PyTorch export writes), so older runtimes load it.
IR_VERSION = 8


def onnx_for_ncnn(param_path: str | Path) -> Path:
    """The ONNX file of an ncnn model (its .bin beside it), converted once and cached in
    ``cache_dir()/onnx`` under the sha256 of the .param and .bin bytes."""
    param_path = Path(param_path)
    digest = _source_sha256(param_path)
    target = cache_dir() / "onnx" / f"{param_path.stem}-{digest[:16]}-ncnn{CONVERTER_VERSION}.onnx"
    if not target.is_file():
        model = ncnn_to_onnx(param_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(target, model.SerializeToString())
    return target


def ncnn_to_onnx(param_path: str | Path) -> onnx.ModelProto:
    """The ONNX graph (opset 17, dynamic batch/height/width, edgesr metadata) of an ncnn model;
    CheckpointError or UnsupportedArchitectureError for one edgesr cannot read."""
    param_path = Path(param_path)
    bin_path = param_path.with_suffix(".bin")
    layers = parse_param(param_path)
    if not bin_path.is_file():
        raise CheckpointError(f"{bin_path}: ncnn .bin not found (the weights of {param_path.name})")
    arch, graph, _, resize = matched_layout(layers, param_path)
    weights = read_weights(layers, BinReader(bin_path), param_path)
    builder = _GraphBuilder(weights, param_path, next(op for op in graph if op.kind == "conv"))
    for index, op in enumerate(graph):
        builder.add(index, op)
    hp, base_scale = _hyperparameters(arch, builder, graph)
    channels = builder.in_channels
    scale = base_scale * resize if resize is not None else base_scale
    if not float(scale).is_integer():
        raise CheckpointError(f"{param_path}: final resize by {resize} gives a non-integer "
                              f"scale {scale}")
    if resize is not None:
        hp["output_resize"] = resize
    model = builder.model(channels, spec_for(arch).opset)
    onnx.helper.set_model_props(model, encode_metadata({
        "arch": arch, "scale": int(scale), "in_channels": channels,
        "out_channels": hp["num_out_ch"],
        "size_multiple": 1, "source_sha256": _source_sha256(param_path),
        "version": __version__, "hyperparameters": hp,
        "output_resize": None if resize is None else {"factor": resize, "mode": "bicubic"},
    }))
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{param_path}: converted graph fails the ONNX checker: "
                          f"{first_line(exc)}") from None
    return model


def _source_sha256(param_path: Path) -> str:
    """sha256 of the .param bytes followed by the .bin bytes (as the PyTorch importer's)."""
    digest = hashlib.sha256()
    for path in (param_path, param_path.with_suffix(".bin")):
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read ncnn {path.suffix} "
                                  f"({exc.strerror})") from None
    return digest.hexdigest()


def _hyperparameters(arch: str, builder: "_GraphBuilder",
                     graph: list[Op]) -> tuple[dict, int]:
    """The hyperparameters the PyTorch importer detects, and the network's own scale."""
    convs = builder.conv_shapes
    channels = builder.in_channels
    if arch == "RRDBNet":  # x2 / x1 nets unshuffle by 2 / 4 first: 4 / 16 times the channels
        stride = next((op.attrs[0] for op in graph if op.kind == "reorg"), 1)
        hp = dict(num_in_ch=channels, num_out_ch=convs[-1][0], scale=4 // stride,
                  num_feat=convs[0][0], num_block=(len(convs) - 6) // 15,
                  num_grow_ch=convs[1][0])
        return hp, 4 // stride
    upscale = next(op.attrs[0] for op in graph if op.kind == "pixelshuffle")
    hp = dict(num_in_ch=channels, num_out_ch=channels, num_feat=convs[0][0],
              num_conv=len(convs) - 2, upscale=upscale, act_type="prelu")
    return hp, upscale


class _GraphBuilder:
    """ONNX nodes and initializers for the ops of a matched ncnn graph, op i's output named
    ``str(i)`` (the input op's ``input``, the last op's ``output``)."""

    def __init__(self, weights: dict[str, list[np.ndarray]], path: Path, first_conv: Op):
        self.weights = weights
        self.path = path
        weight, bias = weights[first_conv.layer.name]
        self.first_conv_inputs = weight.size // max(1, bias.size * 9)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.conv_shapes: list[tuple[int, ...]] = []
        self.in_channels = 0
        self.unshuffle = 1  # the Reorg stride in front of the first convolution

    def name(self, index: int) -> str:
        return INPUT_NAME if index == 0 else str(index)

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str, **attrs) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=f"{op_type}_{output}",
                                           **attrs))

    def add(self, index: int, op: Op) -> None:
        out = self.name(index)
        args = [self.name(i) for i in op.inputs]
        if op.kind == "input":
            return
        if op.kind == "conv":
            self._conv(index, op, args[0], out)
        elif op.kind == "prelu":
            (slopes,) = self.weights[op.layer.name]
            slope = self.const(f"w{index}", slopes.reshape(-1, 1, 1))
            self.node("PRelu", [args[0], slope], out)
        elif op.kind == "concat":
            self.node("Concat", args, out, axis=1)
        elif op.kind == "eltwise":
            self._weighted_sum(index, args, op.attrs[0], out)
        elif op.kind == "add":
            self.node("Add", args, out)
        elif op.kind == "interp":
            self._resize(index, op, args[0], out)
        elif op.kind == "pixelshuffle":
            self.node("DepthToSpace", args, out, blocksize=op.attrs[0], mode="CRD")
        elif op.kind == "reorg":
            self._unshuffle(index, op.attrs[0], args[0], out)
        else:  # matched_layout admits no other kind
            raise CheckpointError(f"{self.path}: no ONNX conversion for {op.kind!r}")

    def _conv(self, index: int, op: Op, x: str, out: str) -> None:
        weight, bias = self.weights[op.layer.name]
        if bias.size == 0 or weight.size % (bias.size * 9):
            raise CheckpointError(
                f"{self.path}: layer {op.layer.name!r} weight size {weight.size} is not a "
                f"multiple of {bias.size} outputs x 3x3")
        weight = weight.reshape(bias.size, -1, 3, 3)
        if not self.conv_shapes:
            self.in_channels = weight.shape[1] // self.unshuffle ** 2
        self.conv_shapes.append(weight.shape)
        act_type, act_params = op.attrs
        conv_out = f"{out}_conv" if act_type else out
        self.node("Conv", [x, self.const(f"w{index}", weight), self.const(f"b{index}", bias)],
                  conv_out, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1],
                  dilations=[1, 1], group=1)
        if act_type:  # matched_layout admits leaky ReLU (type 2) only
            self.node("LeakyRelu", [conv_out], out, alpha=float(act_params[0]))

    def _unshuffle(self, index: int, stride: int, x: str, out: str) -> None:
        """ncnn Reorg (mode 0) is basicsr's pixel_unshuffle: output channel ``c * s*s + j`` is
        input channel c at offset j. SpaceToDepth puts it at ``j * C + c``; a Gather reorders."""
        self.unshuffle = stride
        channels = self.first_conv_inputs // stride ** 2
        order = [j * channels + c for c in range(channels) for j in range(stride ** 2)]
        self.node("SpaceToDepth", [x], f"{out}_s2d", blocksize=stride)
        self.node("Gather", [f"{out}_s2d", self.const(f"g{index}", np.array(order, np.int64))],
                  out, axis=1)

    def _weighted_sum(self, index: int, args: list[str], coeffs: tuple, out: str) -> None:
        terms = []
        for k, (arg, coeff) in enumerate(zip(args, coeffs or (1.0,) * len(args), strict=True)):
            if coeff == 1.0:
                terms.append(arg)
                continue
            factor = self.const(f"c{index}_{k}", np.array(coeff, np.float32))
            self.node("Mul", [arg, factor], f"{out}_mul{k}")
            terms.append(f"{out}_mul{k}")
        self.node("Add", terms, out)

    def _resize(self, index: int, op: Op, x: str, out: str) -> None:
        mode, h_scale, w_scale = op.attrs
        scales = self.const(f"s{index}", np.array([1, 1, h_scale, w_scale], np.float32))
        if mode == NEAREST:
            self.node("Resize", [x, "", scales], out, mode="nearest",
                      coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        elif mode == BICUBIC:
            self.node("Resize", [x, "", scales], out, mode="cubic", cubic_coeff_a=-0.75,
                      coordinate_transformation_mode="half_pixel")
        else:
            raise CheckpointError(f"{self.path}: no ONNX conversion for Interp mode {mode}")

    def model(self, channels: int, opset: int) -> onnx.ModelProto:
        """The model: the last node's output renamed ``output``."""
        final = self.nodes[-1]
        final.output[0] = OUTPUT_NAME
        final.name = f"{final.op_type}_{OUTPUT_NAME}"
        dims_in = ["batch", channels, "height", "width"]
        dims_out = ["batch", channels, "out_height", "out_width"]
        graph = helper.make_graph(
            self.nodes, "edgesr_ncnn",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, dims_in)],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, dims_out)],
            self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                 ir_version=IR_VERSION, producer_name="edgesr",
                                 producer_version=__version__)
