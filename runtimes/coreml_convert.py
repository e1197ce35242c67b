"""CoreML converter: a PyTorch model to an ML program ``.mlpackage``, and a spec reader.

Conversion traces the model and runs ``coremltools.convert`` with flexible height and width
(``RangeDim`` over the shape profile; a fixed profile gives a static shape), float32 inputs
and outputs, and FP16 or FP32 compute precision; ``int8`` additionally quantizes the weights
to INT8 (``coremltools.optimize.coreml.linear_quantize_weights``, FP16 compute). Conversion
and spec reading work on Linux; only prediction needs macOS (see ``coreml_runtime``).
"""

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgesr.errors import EdgesrError
from edgesr.fsutil import atomic_path
from edgesr.models import ModelDescriptor, load_model

# coremltools warns at import about its macOS-only parts and untested torch/sklearn versions.
logging.getLogger("coremltools").setLevel(logging.ERROR)
import coremltools as ct  # noqa: E402
from coremltools.proto import MIL_pb2  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME, OUTPUT_NAME = "input", "output"
METADATA_FIELDS = ("arch", "scale", "in_channels", "out_channels", "size_multiple",
                   "source_sha256", "precision")
#: MIL ops that hold compressed weights (iOS16 affine INT8; iOS18 blockwise).
QUANTIZED_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")

# This module is the coreml entry's ``engine_cache.Builder`` (identity and build).


class CoreMLError(EdgesrError):
    """A model could not be converted to CoreML, or a package is not what edgesr expects."""


@dataclass(frozen=True, kw_only=True)
class PackageSpec:
    """What a package declares: I/O names, input shape ranges per axis ((lo, hi), hi -1 for
    unbounded), I/O element types, compute precision and quantized-weight op count."""

    input_name: str
    output_name: str
    input_ranges: tuple[tuple[int, int], ...]
    default_shape: tuple[int, ...]
    input_dtype: str
    output_dtype: str
    compute_precision: str
    quantized_weight_ops: int
    metadata: dict[str, str]


def identity(options) -> tuple[str, str, str]:
    """(version, device, profile) of a build: packages run on any Apple device."""
    return ct.__version__, "apple", options.profile.label


def build(source: Path, target: Path, options) -> None:
    """Engine-cache builder: ``convert`` the checkpoint ``source`` at ``options``."""
    convert(load_model(source), target, precision=options.precision, profile=options.profile)


def convert(descriptor: ModelDescriptor, target: str | Path, *, precision: str = "fp16",
            profile=None) -> Path:
    """Convert ``descriptor`` to an ML program package at ``target`` (written to a temporary
    name, then renamed). ``profile``: an engine_cache.ShapeProfile (default: 16..512 pixels,
    batch 1)."""
    from edgesr.runtimes.engine_cache import ShapeProfile

    if precision not in PRECISIONS:
        raise CoreMLError(f"coreml precision must be one of {', '.join(PRECISIONS)}, "
                          f"not {precision!r}")
    profile = profile or ShapeProfile(min_hw=(16, 16), opt_hw=(64, 64), max_hw=(512, 512))
    if profile.batch[0] != profile.batch[2]:
        raise CoreMLError("coreml packages take one batch size; use a profile with a fixed batch")
    multiple = descriptor.size_multiple
    if any(v % multiple for v in profile.opt_hw):
        raise CoreMLError(f"{descriptor.name}: tile {profile.opt_hw} must be divisible by "
                          f"{multiple}")
    target = Path(target)
    shape = (profile.batch[1], descriptor.in_channels,
             *(d if profile.is_fixed else ct.RangeDim(lo, hi, default=d)
               for lo, d, hi in zip(profile.min_hw, profile.opt_hw, profile.max_hw,
                                    strict=True)))
    model = descriptor.model.eval().float()
    example = torch.rand(profile.batch[1], descriptor.in_channels, *profile.opt_hw)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace: ct's path
            traced = torch.jit.trace(model, example)
        mlmodel = ct.convert(
            traced, convert_to="mlprogram", minimum_deployment_target=ct.target.macOS13,
            inputs=[ct.TensorType(name=INPUT_NAME, shape=ct.Shape(shape), dtype=np.float32)],
            outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
            compute_precision=(ct.precision.FLOAT32 if precision == "fp32"
                               else ct.precision.FLOAT16))
        if precision == "int8":
            mlmodel = _quantize_weights(mlmodel)
    except Exception as exc:  # coremltools raises many types; one clear line
        raise CoreMLError(f"{descriptor.name}: CoreML conversion failed: {exc}") from None
    metadata = {"arch": descriptor.architecture, "scale": descriptor.scale,
                "in_channels": descriptor.in_channels, "out_channels": descriptor.out_channels,
                "size_multiple": multiple, "source_sha256": descriptor.source_sha256,
                "precision": precision}
    for key, value in metadata.items():
        if value is not None:
            mlmodel.user_defined_metadata[f"edgesr.{key}"] = str(value)
    mlmodel.short_description = f"edgesr {descriptor.name} ({precision})"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, suffix=".mlpackage") as tmp:
        mlmodel.save(str(tmp))
    return target


def _quantize_weights(mlmodel):
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
    )

    config = OptimizationConfig(global_config=OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", weight_threshold=0))
    return linear_quantize_weights(mlmodel, config)


def read_spec(path: str | Path) -> PackageSpec:
    """Read a package's spec without loading the model (works on Linux)."""
    path = Path(path)
    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as exc:
        raise CoreMLError(f"{path}: not a readable CoreML package: {exc}") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise CoreMLError(f"{path}: not an ML program (edgesr converts to mlprogram)")
    inp, out = spec.description.input[0], spec.description.output[0]
    array_types = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    ranges = tuple((r.lowerBound, r.upperBound)
                   for r in inp.type.multiArrayType.shapeRange.sizeRanges)
    default = tuple(inp.type.multiArrayType.shape)
    main = spec.mlProgram.functions["main"]
    ops = main.block_specializations[main.opset].operations
    conv_types = Counter(o.type.tensorType.dataType for op in ops if op.type == "conv"
                         for o in op.outputs)
    compute = {MIL_pb2.DataType.FLOAT16: "fp16", MIL_pb2.DataType.FLOAT32: "fp32"}.get(
        conv_types.most_common(1)[0][0] if conv_types else None, "unknown")
    return PackageSpec(
        input_name=inp.name, output_name=out.name,
        input_ranges=ranges or tuple((d, d) for d in default), default_shape=default,
        input_dtype=array_types.Name(inp.type.multiArrayType.dataType).lower(),
        output_dtype=array_types.Name(out.type.multiArrayType.dataType).lower(),
        compute_precision=compute,
        quantized_weight_ops=sum(op.type in QUANTIZED_WEIGHT_OPS for op in ops),
        metadata={k.removeprefix("edgesr."): v for k, v in spec.description.metadata
                  .userDefined.items() if k.startswith("edgesr.")})
