"""Diffusion graphs (the SD x4 UNet and VAE decoder, an SR3 denoiser) to CoreML ML programs.

coremltools has no ONNX frontend, so each graph is traced from its PyTorch module, the same
(module, ``GraphSpec``) pair the ONNX export uses (``sd_upscaler_graphs``, ``sr3_graph``), and
converted with ``coremltools.convert`` to an ``.mlpackage``: one input per spec input, every
dynamic axis flexible (``ct.RangeDim``; axes of one name share one dimension): batch 1-2 (the
two halves of classifier-free guidance), height and width from the size multiple to
``max_latent``, the text sequence 1-77. Inputs are float32 (integer inputs int32: CoreML has no
int64), compute precision FP16 by default or FP32. The edgesr metadata of the ONNX export goes
into the package's user-defined metadata, so a sampler reads the same fields from either.

``convert_from_source`` writes the package of one exported ONNX graph from the PyTorch source
its export recorded (``source`` and ``source_sha256`` metadata), once the source's weights are
checked against that hash: what ``edgesr build -b sd-upscaler-coreml`` / ``sr3-coreml`` (and
those backends' sessions, on an engine-cache miss) build into the engine cache.

``write_sd_upscaler_packages`` writes ``unet.mlpackage`` and ``vae_decoder.mlpackage`` into an
SD x4 export folder, ``write_sr3_package`` ``<name>.mlpackage`` beside an SR3 ``<name>.onnx``
(``edgesr export ... --coreml``), where the sd-upscaler-coreml / sr3-coreml sessions
(``edgesr.diffusion.coreml_sessions``) find them. Conversion and the spec check run on Linux;
prediction needs macOS.
"""

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgesr import __version__
from edgesr.errors import EdgesrError, first_line
from edgesr.export.diffusion_export import GraphSpec
from edgesr.export.diffusion_sources import open_source
from edgesr.export.specs import encode_metadata
from edgesr.fsutil import atomic_path

PRECISIONS = ("fp16", "fp32")
#: Latent sides a package accepts by default (SD x4: low-res pixels; SR3: output pixels).
MAX_LATENT = 512
MAX_BATCH = 2
MAX_SEQUENCE = 77
INTEGER_INPUTS = ("class_labels",)


@dataclass(frozen=True, kw_only=True)
class PackageIO:
    """What a converted graph's package declares, read back from its spec: per input its
    element type and (lower, upper) bound per axis (upper -1: unbounded), the outputs, the
    compute precision and the edgesr metadata (prefix stripped)."""

    inputs: dict[str, tuple[str, tuple[tuple[int, int], ...]]]
    outputs: tuple[str, ...]
    compute_precision: str
    metadata: dict[str, str]


def _ct():
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    try:
        import coremltools as ct
    except ImportError:
        from edgesr.errors import BackendUnavailableError

        raise BackendUnavailableError("CoreML conversion needs coremltools: "
                                      "pip install coremltools") from None
    return ct


def _group_norm(x, num_groups: int, weight, bias, eps: float):
    """GroupNorm in MIL for any symbolic axis, the batch included (coremltools' own builds the
    grouped shape from the batch size, which fails when the batch is flexible): reshape to
    [-1, groups, C / groups, *spatial], normalise over all but the first two axes."""
    from coremltools.converters.mil.frontend.torch.ops import _var
    from coremltools.converters.mil.mil import Builder as mb

    channels = x.shape[1]
    groups = min(num_groups, channels)
    shape = mb.shape(x=x)
    spatial = mb.slice_by_size(x=shape, begin=[2], size=[-1])
    grouped = mb.concat(values=[np.array([-1, groups, channels // groups], np.int32), spatial],
                        axis=0)
    y = mb.reshape(x=x, shape=grouped)
    axes = list(range(2, 2 + x.rank - 1))
    mean = mb.reduce_mean(x=y, axes=axes, keep_dims=True)
    std = mb.sqrt(x=mb.add(x=_var(y, axes=axes, keep_dims=True, unbiased=False), y=eps))
    y = mb.reshape(x=mb.real_div(x=mb.sub(x=y, y=mean), y=std), shape=shape)
    affine = [1, channels] + [1] * (x.rank - 2)
    if weight is not None:
        y = mb.mul(x=y, y=mb.reshape(x=weight, shape=affine))
    if bias is not None:
        y = mb.add(x=y, y=mb.reshape(x=bias, shape=affine))
    return y


def _cast(context, node, dtype, dtype_name):
    """coremltools' ``_cast`` (torch ``int``/``bool`` of a one-element tensor), folding a
    constant through ``.item()``: NumPy 2 refuses ``int()`` of a 1-d array."""
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.mil import Builder as mb

    x = _get_inputs(context, node, expected=1)[0]
    if not (len(x.shape) == 0 or all(d == 1 for d in x.shape)):
        raise ValueError("input to cast must be either a scalar or a length 1 tensor")
    if x.can_be_folded_to_const():
        res = x if isinstance(x.val, dtype) else mb.const(
            val=dtype(np.asarray(x.val).reshape(-1)[0].item()), name=node.name)
    else:
        if len(x.shape) > 0:
            x = mb.squeeze(x=x, name=node.name + "_item")
        res = mb.cast(x=x, dtype=dtype_name, name=node.name)
    context.add(res, node.name)


@contextlib.contextmanager
def _converter_fixes():
    """coremltools' torch frontend with ``_group_norm`` and ``_cast`` swapped in."""
    from coremltools.converters.mil.frontend.torch import ops

    saved = ops._group_norm_impl, ops._cast
    ops._group_norm_impl, ops._cast = _group_norm, _cast
    try:
        yield
    finally:
        ops._group_norm_impl, ops._cast = saved


def convert_graph(module: nn.Module, spec: GraphSpec, target: str | Path, *,
                  precision: str = "fp16", max_latent: int = MAX_LATENT,
                  max_batch: int = MAX_BATCH) -> Path:
    """Trace ``module`` at ``spec``'s trace size and write its ML program to ``target``
    (``.mlpackage``, under a temporary name, then renamed)."""
    ct = _ct()
    if precision not in PRECISIONS:
        raise EdgesrError(f"CoreML diffusion packages are fp16 or fp32, not {precision!r}")
    multiple = spec.size_multiple
    if max_latent < multiple or not 1 <= max_batch <= MAX_BATCH:
        raise EdgesrError(f"{spec.file}: need max_latent >= {multiple} and max_batch 1 or 2")
    bounds = {"batch": (1, max_batch), "height": (multiple, max_latent - max_latent % multiple),
              "width": (multiple, max_latent - max_latent % multiple),
              "sequence": (1, MAX_SEQUENCE)}
    trace_dims = spec.dims(True)
    args = spec.sample(trace_dims, torch.Generator().manual_seed(0))
    dims: dict[str, object] = {}
    inputs = []
    for name, arg in zip(spec.inputs, args, strict=True):
        axes = spec.dynamic_axes.get(name, {})
        shape = []
        for axis, size in enumerate(arg.shape):
            dim = axes.get(axis)
            if dim is None:
                shape.append(int(size))
                continue
            lo, hi = bounds.get(dim, (1, -1))
            shape.append(dims.setdefault(dim, ct.RangeDim(lo, hi, default=int(size))))
        dtype = np.int32 if name in INTEGER_INPUTS else np.float32
        inputs.append(ct.TensorType(name=name, shape=ct.Shape(shape), dtype=dtype))
    try:
        with torch.no_grad(), warnings.catch_warnings(), _converter_fixes():
            warnings.simplefilter("ignore")  # tracer and deprecation notices
            traced = torch.jit.trace(module.eval(), args, check_trace=False)
            mlmodel = ct.convert(
                traced, convert_to="mlprogram", inputs=inputs,
                outputs=[ct.TensorType(name=spec.output, dtype=np.float32)],
                minimum_deployment_target=ct.target.macOS13,
                compute_precision=(ct.precision.FLOAT32 if precision == "fp32"
                                   else ct.precision.FLOAT16))
    except Exception as exc:  # torch and coremltools raise many types; one clear line
        raise EdgesrError(f"{spec.file}: CoreML conversion failed: {first_line(exc)}") from None
    del traced
    metadata = encode_metadata({**spec.metadata, "size_multiple": multiple,
                                "version": __version__, "precision": precision})
    mlmodel.user_defined_metadata.update(metadata)
    mlmodel.short_description = f"edgesr {spec.file} ({precision})"
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, suffix=".mlpackage") as tmp:
        mlmodel.save(str(tmp))
    return target


def write_sd_upscaler_packages(folder: str | Path, output_dir: str | Path, *,
                               precision: str = "fp16", max_latent: int = MAX_LATENT
                               ) -> list[Path]:
    """``unet.mlpackage`` and ``vae_decoder.mlpackage`` of the diffusers x4 upscaler ``folder``
    in ``output_dir`` (its edgesr export folder); the PyTorch modules are loaded once and freed
    graph by graph."""
    from edgesr.export.sd_upscaler import load_sd_upscaler, sd_upscaler_graphs

    graphs = sd_upscaler_graphs(load_sd_upscaler(folder))
    written = []
    while graphs:
        module, spec = graphs.pop(0)
        target = Path(output_dir) / Path(spec.file).with_suffix(".mlpackage").name
        written.append(convert_graph(module, spec, target, precision=precision,
                                     max_latent=max_latent))
        del module
    return written


def write_sr3_package(descriptor, onnx_path: str | Path, *, precision: str = "fp16",
                      max_latent: int = MAX_LATENT) -> Path:
    """The SR3 denoiser ``descriptor`` as the package beside its export ``onnx_path``."""
    from edgesr.export.diffusion_export import sr3_graph

    onnx_path = Path(onnx_path)
    spec = sr3_graph(descriptor, onnx_path.name)
    return convert_graph(descriptor.model, spec, onnx_path.with_suffix(".mlpackage"),
                         precision=precision, max_latent=max_latent)


def read_package_io(path: str | Path) -> PackageIO:
    """The declared inputs, outputs, compute precision and metadata of package ``path`` (its
    spec only: works on Linux)."""
    ct = _ct()
    from coremltools.proto import MIL_pb2

    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as exc:  # coremltools raises many types
        raise EdgesrError(f"{path}: not a readable CoreML package ({first_line(exc)})") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise EdgesrError(f"{path}: not an ML program")
    names = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    inputs = {}
    for feature in spec.description.input:
        array = feature.type.multiArrayType
        ranges = tuple((r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges)
        inputs[feature.name] = (names.Name(array.dataType).lower(),
                                ranges or tuple((d, d) for d in array.shape))
    main = spec.mlProgram.functions["main"]
    ops = main.block_specializations[main.opset].operations
    types = {o.type.tensorType.dataType for op in ops if op.type in ("conv", "linear", "matmul")
             for o in op.outputs}
    compute = ("fp16" if MIL_pb2.DataType.FLOAT16 in types
               else "fp32" if MIL_pb2.DataType.FLOAT32 in types else "unknown")
    return PackageIO(inputs=inputs, outputs=tuple(o.name for o in spec.description.output),
                     compute_precision=compute,
                     metadata=dict(spec.description.metadata.userDefined))


def convert_from_source(graph: str | Path, target: str | Path, *,
                        precision: str = "fp16") -> Path:
    """The package of exported ONNX ``graph`` at ``target``, traced from its PyTorch source
    (``diffusion_sources.open_source``) with the default shape ranges."""
    graph = Path(graph)
    module, spec = open_source(graph)
    return convert_graph(module, spec, target, precision=precision)
