"""OpenVINO artifacts: INT8 by NNCF post-training quantization, and BF16 execution.

``int8`` quantizes the ONNX model with NNCF on the calibration set; ``keep`` names ONNX nodes
(as ``quantize_int8`` reports them, or its ``first``/``last``/``tail`` presets) that stay
unquantized; ``conv_only`` leaves every op but convolutions (residual sums, concats, LeakyReLU,
upsampling) in float. ``bf16`` keeps FP32 weights and
records the BF16 inference hint, so AVX512_BF16 / AMX CPUs run it in bfloat16; ``int8`` with
``bf16_rest=True`` runs its unquantized layers in BF16 too. The hint lives in the IR's
``runtime_options``; ``edgesr.export.quality.openvino_runner`` reads it back. Both the .xml and
.bin files are written to a temporary folder, then renamed into place.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgesr.calibration import CalibrationSet
from edgesr.export.quantize_common import QuantizeError, import_nncf, load_onnx, name_nodes
from edgesr.export.quantize_int8 import resolve_exclusions
from edgesr.fsutil import move_files, staging_dir

PRECISIONS = ("int8", "bf16")
#: OpenVINO op types ``conv_only`` keeps out of NNCF quantization (ONNX LeakyRelu is PRelu).
NON_CONV_TYPES = ("Add", "Multiply", "Concat", "Interpolate", "PRelu")
HINT_KEY = ["runtime_options", "INFERENCE_PRECISION_HINT"]


@dataclass(frozen=True, kw_only=True)
class OpenVinoReport:
    """What ``quantize_openvino`` wrote: the IR .xml, its precision and inference hint."""

    path: Path
    precision: str
    inference_precision: str
    kept: list[str]


def _read(model_path: str | Path):
    import openvino as ov

    try:
        return ov.convert_model(str(model_path))
    except Exception as exc:
        raise QuantizeError(f"{model_path}: OpenVINO cannot read the model ({exc})") from None


def _nncf_int8(model, calib: CalibrationSet, keep: Sequence[str], conv_only: bool):
    nncf = import_nncf()
    ignored = nncf.IgnoredScope(patterns=[f"{re.escape(name)}(/.*)?" for name in keep],
                                types=list(NON_CONV_TYPES) if conv_only else [], validate=False)
    try:
        return nncf.quantize(model, nncf.Dataset(calib), subset_size=len(calib),
                             ignored_scope=ignored)
    except Exception as exc:
        raise QuantizeError(f"NNCF INT8 quantization failed: {exc}") from None


def quantize_openvino(model_path: str | Path, output_path: str | Path,
                      calib: CalibrationSet | None = None, *, precision: str = "int8",
                      keep: Sequence[str] = (), conv_only: bool = False,
                      bf16_rest: bool = False) -> OpenVinoReport:
    """Build an OpenVINO IR (``output_path``, .xml) from an FP32 ONNX model (see module doc)."""
    import openvino as ov

    if precision not in PRECISIONS:
        raise QuantizeError(f"unknown OpenVINO precision {precision!r}; "
                            f"choose {', '.join(PRECISIONS)}")
    output_path = Path(output_path).with_suffix(".xml")
    keep = resolve_exclusions(name_nodes(load_onnx(model_path)), keep) if keep else []
    model = _read(model_path)
    if precision == "int8":
        if calib is None:
            raise QuantizeError("OpenVINO INT8 needs a calibration set")
        model = _nncf_int8(model, calib, keep, conv_only)
    hint = "bf16" if precision == "bf16" or bf16_rest else "f32"
    model.set_rt_info(hint, HINT_KEY)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(output_path) as tmp:
        tmp_xml = tmp / output_path.name
        try:
            ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
            move_files([(tmp_xml.with_suffix(".bin"), output_path.with_suffix(".bin")),
                        (tmp_xml, output_path)])
        except (OSError, RuntimeError) as exc:
            raise QuantizeError(f"{output_path}: cannot write the OpenVINO IR ({exc})") from None
    return OpenVinoReport(path=output_path, precision=precision, inference_precision=hint,
                          kept=keep)
