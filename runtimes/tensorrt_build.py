"""TensorRT engine builder: an edgesr ONNX model to a serialized plan.

One optimization profile (min / opt / max tile and batch), FP32, FP16 or INT8 from an explicit
Q/DQ model (``edgesr quantize --precision int8``), a persistent timing cache, and a workspace
limit. An ONNX model that already carries its precision (FP16 tensors or Q/DQ nodes) is built
as a strongly typed network; an FP32 model asked for FP16 uses the FP16 builder flag, which
TensorRT 11 removed (convert the model to FP16 ONNX first there).

This module imports without TensorRT or a GPU: ``unavailable_reason()`` says what is missing.
"""

import json
from pathlib import Path

import onnx

from edgesr.errors import BackendUnavailableError, EdgesrError
from edgesr.fsutil import file_lock, write_bytes

try:
    import tensorrt as trt
except ImportError as exc:  # optional dependency: report it, don't fail the import
    trt = None
    _TRT_IMPORT_ERROR = str(exc)

PRECISIONS = ("fp32", "fp16", "int8")
# This module is the tensorrt entry's ``engine_cache.Builder`` (identity and build).


class TensorRTError(EdgesrError):
    """TensorRT could not parse a model, build an engine or run it."""


def cudart():
    """cuda-python's runtime API module (``cuda.bindings.runtime``, or ``cuda.cudart`` before
    cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def cuda_call(result):
    """Unpack a cuda-python ``(error, *values)`` result; raise TensorRTError on an error."""
    err, *values = result
    if int(err) != 0:
        raise TensorRTError(f"CUDA error {int(err)}: {cudart().cudaGetErrorString(err)[1]!r}")
    return values[0] if len(values) == 1 else tuple(values)


def unavailable_reason() -> str | None:
    """Why TensorRT cannot run here (no tensorrt, no cuda-python, no GPU), or None."""
    if trt is None:
        return (f"tensorrt is not installed ({_TRT_IMPORT_ERROR}); on a machine with an NVIDIA "
                "GPU: pip install 'edgesr[tensorrt]'")
    try:
        runtime = cudart()
    except ImportError as exc:
        return f"cuda-python is not usable ({exc}); pip install cuda-python"
    err, count = runtime.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        return f"no CUDA GPU is usable here ({getattr(err, 'name', err)})"
    return None


def require_tensorrt() -> None:
    reason = unavailable_reason()
    if reason:
        raise BackendUnavailableError(f"tensorrt: {reason}")


def device_label(device_id: int = 0) -> str:
    """GPU name and compute capability, e.g. ``NVIDIA_H100_sm90``: engines are specific to it."""
    props = cuda_call(cudart().cudaGetDeviceProperties(device_id))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return f"{name.strip(chr(0)).replace(' ', '_')}_sm{props.major}{props.minor}"


def identity(options) -> tuple[str, str, str]:
    """(version, device, profile) of a build; needs TensorRT and a GPU."""
    require_tensorrt()
    return trt.__version__, device_label(use_device(options.device)), options.profile.label


def use_device(device: str | None) -> int:
    """Make CUDA device ``device`` (an index; None: 0) the one TensorRT builds on; its index."""
    try:
        device_id = int(device or 0)
    except ValueError:
        raise TensorRTError(f"tensorrt: --device is a CUDA device index, not {device!r}") from None
    cuda_call(cudart().cudaSetDevice(device_id))
    return device_id


def build(source: Path, target: Path, options) -> None:
    """Engine-cache builder: ``build_plan`` on ``options.device`` with the cache's shared
    timing cache."""
    use_device(options.device)
    timing = target.parent.parent / f"timing-{identity(options)[1]}.cache"
    build_plan(source, target, precision=options.precision, profile=options.profile,
               workspace_mb=options.workspace_mb, timing_cache=timing)


def onnx_precision(path: Path) -> str:
    """int8 for a Q/DQ model, fp16 for one with FP16 tensors, else fp32."""
    model = onnx.load(str(path), load_external_data=False)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    if any(t.data_type == fp16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def parsed_network(onnx_path: Path, *, precision: str, workspace_mb: int):
    """(builder, network, config, parser) for ONNX graph ``onnx_path``: strongly typed when the
    graph carries its own precision (FP16 or Q/DQ), else the FP16 flag for ``fp16`` and TF32
    off for ``fp32``; the parser is returned to keep the weights it owns alive. The one home
    of the TensorRT set-up shared by RRDB plans and the diffusion graphs."""
    strongly_typed = onnx_precision(onnx_path) != "fp32"
    if precision == "fp16" and not strongly_typed and not hasattr(trt.BuilderFlag, "FP16"):
        raise TensorRTError(f"TensorRT {trt.__version__} takes precision from the model: "
                            "convert it with `edgesr quantize --precision fp16` first")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32: TF32 drops 13 mantissa bits
    return builder, network, config, parser


def build_plan(onnx_path: str | Path, plan_path: str | Path, *, precision: str = "fp16",
               profile, workspace_mb: int = 1024, timing_cache: Path | None = None) -> Path:
    """Build a serialized engine for ``profile`` (an engine_cache.ShapeProfile) and write it,
    with its edgesr metadata beside it (``<plan>.json``), under temporary names then renamed.
    The timing cache, if given, is read first and written back after the build."""
    require_tensorrt()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if precision not in PRECISIONS:
        raise TensorRTError(f"tensorrt precision must be one of {', '.join(PRECISIONS)}")
    typed = onnx_precision(onnx_path)
    if precision == "int8" and typed != "int8":
        raise TensorRTError(f"{onnx_path}: INT8 engines are built from a Q/DQ model; make one "
                            "with `edgesr quantize --precision int8`")
    builder, network, config, _parser = parsed_network(onnx_path, precision=precision,
                                                       workspace_mb=workspace_mb)
    name = network.get_input(0).name
    channels = network.get_input(0).shape[1]
    shapes = [(b, channels, *hw) for b, hw in zip(
        profile.batch, (profile.min_hw, profile.opt_hw, profile.max_hw), strict=True)]
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(name, *shapes)
    config.add_optimization_profile(opt_profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=True)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TensorRTError(f"{onnx_path}: TensorRT failed to build the engine (see its log)")
    if timing_cache is not None:
        _save_timing_cache(config, timing_cache)
    from edgesr.export.specs import read_onnx_metadata

    meta = {k: v for k, v in read_onnx_metadata(onnx_path).items()
            if k in ("arch", "scale", "in_channels", "out_channels", "size_multiple")}
    meta.update(precision=precision, tensorrt=trt.__version__, profile=profile.label)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(plan_path.with_suffix(".json"), json.dumps(meta, indent=1).encode())
    write_bytes(plan_path, memoryview(plan))
    return plan_path


def _save_timing_cache(config, path: Path) -> None:
    """Merge this build's timing cache into the file at ``path`` under a file lock, so that two
    builders sharing it (parallel builds of other engine keys) both keep what they measured."""
    cache = config.get_timing_cache()
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".lock")):
        if path.is_file():  # written by another builder since this one read it
            cache.combine(config.create_timing_cache(path.read_bytes()), True)
        write_bytes(path, memoryview(cache.serialize()))
