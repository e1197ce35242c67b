"""Read ncnn's text .param graph and its .bin weights (the format of ncnn's ``Net::load_param``).

.param: the magic ``7767517``, ``<layer count> <blob count>``, then one layer a line:
``type name n_in n_out in_blobs... out_blobs... key=value...``. A key of ``-23300 - k`` holds
array parameter ``k`` as ``count,v1,v2...``.

.bin: each layer's weights in layer order, as ncnn's ``ModelBinFromDataReader`` reads them.
A convolution weight starts with a 4-byte tag (0 or 0x0002C056: float32, 0x01306B47: float16
padded to 4 bytes, 0x000D4B38: int8); biases and PReLU slopes are raw float32 with no tag.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.errors import CheckpointError, UnsupportedArchitectureError

MAGIC = 7767517
ARRAY_KEY_BASE = -23300
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAGS_FP32 = (0x00000000, 0x0002C056)

ParamValue = int | float | tuple[int | float, ...]


@dataclass(frozen=True)
class NcnnLayer:
    """One layer line of a .param file; ``params`` maps ncnn's numeric ids to values."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, ParamValue]


def parse_param(path: Path) -> list[NcnnLayer]:
    """Parse a text .param file; CheckpointError if it is not a well-formed ncnn graph."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ncnn .param ({exc.strerror})") from None
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise CheckpointError(f"{path}: not an ncnn text .param (first line is not {MAGIC})")
    if len(lines) < 2 or len(lines[1]) != 2 or not all(t.isdigit() for t in lines[1]):
        raise CheckpointError(f"{path}: second line must be '<layer count> <blob count>'")
    layer_count, blob_count = map(int, lines[1])
    if len(lines) - 2 != layer_count:
        raise CheckpointError(
            f"{path}: declares {layer_count} layers but has {len(lines) - 2} (truncated?)")
    layers = [_parse_layer(path, tokens) for tokens in lines[2:]]
    _check_blobs(path, layers, blob_count)
    return layers


def _parse_layer(path: Path, tokens: list[str]) -> NcnnLayer:
    where = f"{path}: layer line {' '.join(tokens[:2])!r}"
    try:
        n_in, n_out = int(tokens[2]), int(tokens[3])
    except (IndexError, ValueError):
        raise CheckpointError(f"{where} lacks its input/output counts") from None
    blobs_end = 4 + n_in + n_out
    if n_in < 0 or n_out < 0 or len(tokens) < blobs_end:
        raise CheckpointError(f"{where} lists fewer blobs than its counts say")
    try:
        params = _parse_params(tokens[blobs_end:])
    except ValueError as exc:
        raise CheckpointError(f"{where} has a malformed parameter ({exc})") from None
    return NcnnLayer(tokens[0], tokens[1], tuple(tokens[4:4 + n_in]),
                     tuple(tokens[4 + n_in:blobs_end]), params)


def _parse_params(items: list[str]) -> dict[int, ParamValue]:
    params: dict[int, ParamValue] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} has no '='")
        params[int(key)] = _parse_value(value)
    return _fold_arrays(params)


def _parse_value(text: str) -> ParamValue:
    items = text.split(",")
    values = tuple(_number(v) for v in items)
    return values if len(items) > 1 else values[0]


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _fold_arrays(params: dict[int, ParamValue]) -> dict[int, ParamValue]:
    """Turn ``-233xx=n,v1..vn`` entries into array parameter ``xx`` holding ``(v1..vn)``."""
    out: dict[int, ParamValue] = {}
    for key, value in params.items():
        if key > ARRAY_KEY_BASE:
            out[key] = value
            continue
        items = value if isinstance(value, tuple) else (value,)
        if int(items[0]) != len(items) - 1:
            raise ValueError(
                f"array parameter {key} declares {items[0]} values but has {len(items) - 1}")
        out[ARRAY_KEY_BASE - key] = tuple(items[1:])
    return out


def _check_blobs(path: Path, layers: list[NcnnLayer], blob_count: int) -> None:
    produced: set[str] = set()
    for layer in layers:
        missing = [b for b in layer.inputs if b not in produced]
        if missing:
            raise CheckpointError(
                f"{path}: layer {layer.name!r} reads blob {missing[0]!r} before any layer makes it")
        produced.update(layer.outputs)
    if len(produced) != blob_count:
        raise CheckpointError(f"{path}: declares {blob_count} blobs but its layers make "
                              f"{len(produced)}")


class BinReader:
    """Reads ncnn weight arrays from a .bin file front to back, checking every size."""

    def __init__(self, path: Path):
        try:
            self.data = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read ncnn .bin ({exc.strerror})") from None
        self.path = path
        self.offset = 0

    def raw(self, count: int, what: str) -> np.ndarray:
        """``count`` untagged float32 values (biases, PReLU slopes)."""
        return self._take(count, "<f4", 4 * count, what)

    def tagged(self, count: int, what: str) -> np.ndarray:
        """``count`` weights behind a 4-byte type tag, returned as float32."""
        tag = int(self._take(1, "<u4", 4, what)[0])
        if tag in TAGS_FP32:
            return self._take(count, "<f4", 4 * count, what)
        if tag == TAG_FP16:
            return self._take(count, "<f2", _align4(2 * count), what).astype(np.float32)
        if tag == TAG_INT8:
            raise CheckpointError(
                f"{self.path}: {what} holds int8-quantized weights, which are not supported "
                "(use an fp32 or fp16 model)")
        raise CheckpointError(f"{self.path}: {what} has unknown weight tag 0x{tag:08X}")

    def finish(self) -> None:
        """Raise unless every byte of the file was read."""
        if self.offset != len(self.data):
            raise CheckpointError(
                f"{self.path}: {len(self.data) - self.offset} bytes left over after the last "
                "weight (.bin does not match its .param)")

    def _take(self, count: int, dtype: str, nbytes: int, what: str) -> np.ndarray:
        end = self.offset + nbytes
        if end > len(self.data):
            raise CheckpointError(
                f"{self.path}: truncated, {what} needs bytes {self.offset}..{end} but the file "
                f"has {len(self.data)} (.bin does not match its .param)")
        array = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset)
        self.offset = end
        return array.astype(np.float32) if dtype == "<f4" else array


def _align4(nbytes: int) -> int:
    return (nbytes + 3) // 4 * 4


WEIGHTLESS_TYPES = frozenset(
    {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "Reorg",
     "ReLU"})
#: Layer types whose weights ``read_weights`` knows how to read.
WEIGHT_TYPES = frozenset({"Convolution", "PReLU"}) | WEIGHTLESS_TYPES


def read_weights(layers: list[NcnnLayer], reader: BinReader,
                 param_path: Path) -> dict[str, list[np.ndarray]]:
    """Read the weights of every layer, keyed by layer name: ``[weight, bias]`` for a
    Convolution (bias only when ``5=1``), ``[slopes]`` for a PReLU. The .bin must be used up."""
    weights: dict[str, list[np.ndarray]] = {}
    for layer in layers:
        what = f"layer {layer.name!r}"
        if layer.type == "Convolution":
            blobs = [reader.tagged(_int_param(layer, 6, param_path), f"{what} weight")]
            if _int_param(layer, 5, param_path, default=0):
                blobs.append(reader.raw(_int_param(layer, 0, param_path), f"{what} bias"))
            weights[layer.name] = blobs
        elif layer.type == "PReLU":
            weights[layer.name] = [reader.raw(_int_param(layer, 0, param_path), f"{what} slopes")]
        elif layer.type not in WEIGHTLESS_TYPES:
            raise UnsupportedArchitectureError(
                f"{param_path}: layer {layer.name!r} has unsupported type {layer.type!r}")
    reader.finish()
    return weights


def _int_param(layer: NcnnLayer, key: int, path: Path, default: int | None = None) -> int:
    value = layer.params.get(key, default)
    if not isinstance(value, int) or value < 0:
        raise CheckpointError(f"{path}: layer {layer.name!r} needs a non-negative integer {key}=")
    return value
