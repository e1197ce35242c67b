"""What an edgesr ONNX file looks like: one export spec per architecture, and its metadata.

An ``ExportSpec`` (after optimum's per-model export configs) fixes the opset, the named dynamic
axes, the trace and parity input sizes and the parity tolerance of one architecture. The
metadata schema is shared by the exporter (``encode_metadata``) and the ONNX Runtime backend
(``decode_metadata``); this module imports no torch, and onnx only to read a file's
metadata (``read_onnx_metadata``).
"""

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesr.errors import CheckpointError, ExportError, first_line

INPUT_NAME = "input"
OUTPUT_NAME = "output"
MIN_OPSET = 17

METADATA_PREFIX = "edgesr."
_INT_KEYS = ("scale", "in_channels", "out_channels", "size_multiple", "latent_channels")
_FLOAT_KEYS = ("vae_scaling_factor",)
#: The ranges integer metadata must lie in (a scale of 0 or 100000 is a damaged file).
_INT_RANGES = {"scale": (1, 16), "in_channels": (1, 64), "out_channels": (1, 64),
               "size_multiple": (1, 1024), "latent_channels": (1, 64)}
_JSON_KEYS = ("hyperparameters", "output_resize")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True, kw_only=True)
class ExportSpec:
    """How one architecture is exported and how closely ONNX Runtime must match PyTorch.

    ``trace_hw``/``parity_hw``: base (height, width) of the trace and parity inputs, rounded up
    to the model's size multiple. ``atol``: largest allowed absolute difference; ``min_psnr``:
    lowest allowed PSNR (dB, peak 1.0) of the ONNX output against the PyTorch one.
    """

    architecture: str
    opset: int = MIN_OPSET
    atol: float = 1e-3
    min_psnr: float = 55.0
    trace_hw: tuple[int, int] = (24, 24)
    parity_hw: tuple[int, int] = (19, 29)
    parity_batch: int = 2

    def __post_init__(self) -> None:
        if self.opset < MIN_OPSET:
            raise ExportError(f"{self.architecture}: opset {self.opset} < {MIN_OPSET}")
        if self.atol <= 0 or self.parity_batch < 1:
            raise ExportError(f"{self.architecture}: atol and parity_batch must be positive")

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Named dynamic NCHW axes of the input and output tensors."""
        return {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}}

    def trace_size(self, size_multiple: int = 1) -> tuple[int, int]:
        """(height, width) of the sample the graph is traced with."""
        return (_round_up(self.trace_hw[0], size_multiple),
                _round_up(self.trace_hw[1], size_multiple))

    def parity_size(self, size_multiple: int = 1) -> tuple[int, int]:
        """(height, width) of the parity input: a multiple of ``size_multiple``, never the
        trace size, so a graph that baked in the trace shape fails the check."""
        h, w = (_round_up(v, size_multiple) for v in self.parity_hw)
        if (h, w) == self.trace_size(size_multiple):
            h, w = h + size_multiple, w + 2 * size_multiple
        return h, w


DEFAULT_SPEC = ExportSpec(architecture="default")

SPECS: dict[str, ExportSpec] = {
    # 23 residual-in-residual blocks: float32 rounding differences accumulate with depth.
    "RRDBNet": ExportSpec(architecture="RRDBNet", atol=1e-3, min_psnr=60.0),
    # A shallow conv stack: ONNX Runtime matches PyTorch to a few float32 ulps.
    "SRVGGNetCompact": ExportSpec(architecture="SRVGGNetCompact", atol=5e-4, min_psnr=65.0),
}


def spec_for(architecture: str) -> ExportSpec:
    """The export spec of ``architecture``; unknown architectures get ``DEFAULT_SPEC``."""
    return SPECS.get(architecture, DEFAULT_SPEC)


def encode_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """ONNX ``metadata_props`` for ``values``: keys get the ``edgesr.`` prefix, dicts become
    JSON, None values are left out."""
    props = {}
    for key, value in values.items():
        if value is None:
            continue
        text = json.dumps(value, sort_keys=True, default=str) if key in _JSON_KEYS else str(value)
        props[METADATA_PREFIX + key] = text
    return props


def session_metadata(session, source: str) -> dict[str, Any]:
    """``decode_metadata`` of an ONNX Runtime session's model; metadata that is not UTF-8 text
    (which ONNX Runtime cannot decode) is a CheckpointError too."""
    try:
        props = session.get_modelmeta().custom_metadata_map
    except UnicodeDecodeError:
        raise CheckpointError(f"{source}: a metadata key or value is not UTF-8 text") from None
    return decode_metadata(props, source)


def decode_metadata(props: Mapping[str, str], source: str = "ONNX model") -> dict[str, Any]:
    """The edgesr entries of ONNX ``metadata_props``, prefix stripped and values typed.

    Returns an empty dict for an ONNX file edgesr did not write.
    """
    values: dict[str, Any] = {}
    for full_key, text in props.items():
        if not full_key.startswith(METADATA_PREFIX):
            continue
        key = full_key.removeprefix(METADATA_PREFIX)
        try:
            values[key] = (int(text) if key in _INT_KEYS else float(text) if key in _FLOAT_KEYS
                           else json.loads(text) if key in _JSON_KEYS else text)
        except ValueError:
            raise CheckpointError(f"{source}: bad metadata {full_key}={text!r}") from None
        low, high = _INT_RANGES.get(key, (None, None))
        if low is not None and not low <= values[key] <= high:
            raise CheckpointError(f"{source}: bad metadata {full_key}={text!r}: must be from "
                                  f"{low} to {high}")
    return values


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The edgesr metadata of an ONNX file (``arch``, ``scale``, ...); {} if edgesr did not
    write it. Raises CheckpointError for a missing or unreadable file."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX model not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    if proto.ir_version == 0:
        raise CheckpointError(f"{path}: not an ONNX model (no IR version)")
    check_external_data(path, proto)
    props = {p.key: p.value for p in proto.metadata_props}
    if not all(isinstance(t, str) for t in itertools.chain(props, props.values())):
        raise CheckpointError(f"{path}: a metadata key or value is not UTF-8 text")
    return decode_metadata(props, str(path))


def check_external_data(path: Path, proto=None) -> None:
    """Refuse an ONNX file whose external-data tensors point outside its own folder (an
    absolute path or ``..``): a hostile model could otherwise read any file."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if proto is None:
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except (DecodeError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable ONNX model ({first_line(exc)})") \
                from None
    folder = path.resolve().parent
    for tensor in _tensors(proto.graph):
        for entry in tensor.external_data:
            if entry.key == "location" and not (folder / entry.value).resolve().is_relative_to(
                    folder):
                raise CheckpointError(f"{path}: tensor {tensor.name!r} keeps its data in "
                                      f"{entry.value!r}, outside the model's folder; refused")


def _tensors(graph):
    """Every tensor of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)
