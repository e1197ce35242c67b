"""ONNX Runtime backend: runs an .onnx file on the CPU, CUDA or TensorRT execution provider.

RuntimeInfo comes from two places. The graph's input shape: static height and width give
``fixed_hw``, a static batch gives ``max_batch`` (smaller batches are padded up to it, larger
ones split). The edgesr metadata written by ``edgesr.export`` gives scale, channels and size
multiple. An ONNX file without that metadata is probed instead: it is run on zeros of side
16 + m for m in 1, 2, 4, 8, 16 (or once at its fixed size); the first size that runs and comes
back exactly k times larger gives scale k and size multiple m.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgesr.errors import (
    BackendUnavailableError,
    CheckpointError,
    EdgesrError,
    InferenceError,
    first_line,
)
from edgesr.export.specs import session_metadata
from edgesr.runtimes.base import Runtime, RuntimeInfo

DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
PROBE_MULTIPLES = (1, 2, 4, 8, 16)
_INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def require_providers(backend: str, providers: list[str] | tuple[str, ...]) -> None:
    """Raise one clear BackendUnavailableError naming ``backend`` unless this onnxruntime build
    has every execution provider in ``providers``."""
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise BackendUnavailableError(
            f"{backend}: {', '.join(missing)} not in this onnxruntime build (available: "
            f"{', '.join(available)}); GPU devices need onnxruntime-gpu")


@dataclass(frozen=True, kw_only=True)
class OnnxRuntimeConfig:
    """``device``: "cpu", "cuda" or "tensorrt", each mapped to its execution providers with the
    slower ones as fallback; ``providers``: an explicit provider list that overrides ``device``;
    ``threads``: intra-op threads (0 keeps ONNX Runtime's default); ``graph_optimization``:
    "disable", "basic", "extended" or "all"."""

    device: str = "cpu"
    providers: tuple[str, ...] = ()
    threads: int = 0
    graph_optimization: str = "all"
    preferred_batch: int = 1

    def __post_init__(self) -> None:
        if self.device not in DEVICE_PROVIDERS:
            raise EdgesrError(f"onnxruntime: unknown device {self.device!r}; "
                              f"choose from {', '.join(DEVICE_PROVIDERS)}")
        if self.graph_optimization not in OPTIMIZATION_LEVELS:
            raise EdgesrError(f"onnxruntime: unknown graph_optimization "
                              f"{self.graph_optimization!r}; choose from "
                              f"{', '.join(OPTIMIZATION_LEVELS)}")
        if self.threads < 0 or self.preferred_batch < 1:
            raise EdgesrError("onnxruntime: threads must be >= 0 and preferred_batch >= 1")

    @property
    def execution_providers(self) -> tuple[str, ...]:
        """The providers to ask for, in order of preference."""
        return tuple(self.providers) or DEVICE_PROVIDERS[self.device]


class OnnxRuntime(Runtime):
    """Runs an ONNX model (ideally one written by ``edgesr.export``) with ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, model_path: str | Path, config: OnnxRuntimeConfig | None = None):
        super().__init__()
        self.model_path = Path(model_path)
        self.config = config or OnnxRuntimeConfig()
        self.session: ort.InferenceSession | None = None
        self._input, self._output, self._dtype = "", "", np.float32

    def activate_impl(self) -> RuntimeInfo:
        session = self._open_session()
        inputs, outputs = session.get_inputs(), session.get_outputs()
        path = self.model_path
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise CheckpointError(f"{path}: expected one NCHW image input, found "
                                  f"{[(i.name, i.shape) for i in inputs]}")
        dtype = _INPUT_DTYPES.get(inputs[0].type)
        if dtype is None:
            raise CheckpointError(f"{path}: unsupported input type {inputs[0].type}")
        batch, channels, height, width = (d if isinstance(d, int) else None
                                          for d in inputs[0].shape)
        if (height is None) != (width is None):
            raise CheckpointError(f"{path}: input height and width must be both static or "
                                  f"both dynamic, got shape {inputs[0].shape}")
        fixed_hw = (height, width) if height is not None else None
        self.session, self._input, self._output = session, inputs[0].name, outputs[0].name
        self._dtype = dtype
        meta = session_metadata(session, str(path))
        channels = channels or meta.get("in_channels")
        if channels is None:
            raise CheckpointError(f"{path}: dynamic channel axis and no edgesr metadata")
        if "scale" in meta:
            scale, multiple = meta["scale"], meta.get("size_multiple", 1)
            out_channels = meta.get("out_channels", channels)
        else:
            scale, multiple, out_channels = self._probe(channels, fixed_hw, batch or 1)
        return RuntimeInfo(scale=scale, in_channels=channels, out_channels=out_channels,
                           fixed_hw=fixed_hw, size_multiple=multiple,
                           preferred_batch=batch or self.config.preferred_batch, max_batch=batch,
                           precision=model_precision(path, dtype), device=self.config.device)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        info = self.info
        height, width = batch.shape[2:]
        if info.fixed_hw is not None and (height, width) != info.fixed_hw:
            raise InferenceError(f"{self.name}: model takes {info.fixed_hw[0]}x{info.fixed_hw[1]} "
                                 f"inputs only, got {height}x{width}")
        if height % info.size_multiple or width % info.size_multiple:
            raise InferenceError(f"{self.name}: input {height}x{width} is not divisible by the "
                                 f"model's size multiple {info.size_multiple}")
        x = batch.astype(self._dtype, copy=False)
        if info.max_batch is None:
            return self._run(x)
        step = info.max_batch
        chunks = []
        for start in range(0, len(x), step):
            chunk = x[start:start + step]
            pad = np.zeros((step - len(chunk), *chunk.shape[1:]), chunk.dtype)
            chunks.append(self._run(np.concatenate([chunk, pad]))[:len(chunk)])
        return np.concatenate(chunks)

    def deactivate_impl(self) -> None:
        self.session = None

    def _run(self, x: np.ndarray) -> np.ndarray:
        assert self.session is not None
        out = self.session.run([self._output], {self._input: x})[0]
        return out.astype(np.float32, copy=False)

    def _open_session(self) -> ort.InferenceSession:
        path, config = self.model_path, self.config
        providers = config.execution_providers
        require_providers("onnxruntime", providers)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = OPTIMIZATION_LEVELS[config.graph_optimization]
        options.intra_op_num_threads = config.threads
        options.log_severity_level = 3  # errors only; a provider fallback is caught below
        try:
            session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as exc:  # onnxruntime's load errors are not one class
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it "
                                  f"({first_line(exc)})") from None
        if providers[0] not in session.get_providers():
            raise BackendUnavailableError(
                f"onnxruntime: {providers[0]} failed to start (running on "
                f"{', '.join(session.get_providers())}); check the CUDA/TensorRT installation")
        return session

    def _probe(self, channels: int, fixed_hw: tuple[int, int] | None,
               batch: int) -> tuple[int, int, int]:
        """(scale, size multiple, output channels) of a model without edgesr metadata."""
        assert self.session is not None
        trials = ([(fixed_hw, 1)] if fixed_hw is not None
                  else [((16 + m, 16 + m), m) for m in PROBE_MULTIPLES])
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4  # a size that does not run is expected here
        for (height, width), multiple in trials:
            x = np.zeros((batch, channels, height, width), self._dtype)
            try:
                out = self.session.run([self._output], {self._input: x}, quiet)[0]
            except Exception:  # this size does not run; try the next multiple
                continue
            scale = out.shape[2] // height if out.ndim == 4 else 0
            if scale >= 1 and out.shape[2:] == (scale * height, scale * width):
                return scale, multiple, int(out.shape[1])
        raise CheckpointError(f"{self.model_path}: no edgesr metadata, and no probe input came "
                              "back an integer scale larger; cannot tell the model's scale")


#: ONNX operators that make a model INT8 (QDQ or QOperator form).
_INT8_OPS = {"DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}


def model_precision(path: Path, input_dtype: type) -> str | None:
    """The precision an ONNX model runs at: int8 when it holds quantized operators; fp16 when
    its input is half, or when its weights are half or it casts to half inside while its I/O
    stays FP32 (``edgesr quantize -p fp16`` keeps FP32 I/O and the overflow guard's nodes in
    FP32; the rest is FP16); else fp32. None when ``onnx`` (needed to read the graph) is not
    installed."""
    if input_dtype == np.float16:
        return "fp16"
    try:
        import onnx
    except ImportError:
        return None

    graph = onnx.load(str(path), load_external_data=False).graph
    if any(node.op_type in _INT8_OPS for node in graph.node):
        return "int8"
    half = onnx.TensorProto.FLOAT16
    if any(init.data_type == half for init in graph.initializer) or any(
            node.op_type == "Cast" and any(a.name == "to" and a.i == half for a in node.attribute)
            for node in graph.node):
        return "fp16"
    return "fp32"
