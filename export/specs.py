"""What an edgesr ONNX file looks like: one export spec per architecture, and its metadata.

An ``ExportSpec`` (after optimum's per-model export configs) fixes the opset, the named dynamic
axes, the trace and parity input sizes and the parity tolerance of one architecture. The
metadata schema is shared by the exporter (``encode_metadata``) and the ONNX Runtime backend
(``decode_metadata``); this module imports no torch, and onnx only to read a file's
metadata (``read_onnx_metadata``).
"""

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
    return decode_metadata({p.key: p.value for p in proto.metadata_props}, str(path))
