"""TensorRT backend: runs a serialized plan on one CUDA stream with pinned host buffers.

Given an ONNX model it builds the plan first through the engine cache (``tensorrt_build``).
Buffers are allocated once for the profile's largest shape: device memory with
``cudaMalloc`` and NumPy host arrays pinned with ``cudaHostRegister`` (cuda-python), so each
batch is one async host-to-device copy, ``execute_async_v3`` and one device-to-host copy.
Imports without TensorRT; activation then raises BackendUnavailableError with the reason.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.errors import BackendUnavailableError, EdgesrError, InferenceError
from edgesr.runtimes.base import Runtime, RuntimeInfo
from edgesr.runtimes.tensorrt_build import (
    PRECISIONS,
    TensorRTError,
    cuda_call,
    cudart,
    device_label,
    trt,
    unavailable_reason,
)

PLAN_SUFFIXES = (".plan", ".engine", ".trt")


def describe() -> str:
    """TensorRT version and GPU, for ``edgesr backends`` (call when available)."""
    return f"TensorRT {trt.__version__} on {device_label(0)}"


@dataclass(frozen=True, kw_only=True)
class TensorRTConfig:
    """``device``: CUDA device index. When an ONNX model is built first: ``precision``
    (fp32/fp16/int8 from a Q/DQ model), ``tile`` (a fixed (height, width); None: a dynamic
    16..``max_tile`` profile, optimised for ``opt_tile``), ``max_batch`` and ``workspace_mb``."""

    device: int = 0
    precision: str = "fp16"
    tile: tuple[int, int] | None = None
    opt_tile: int = 256
    max_tile: int = 512
    max_batch: int = 4
    workspace_mb: int = 2048

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EdgesrError(f"tensorrt: precision must be one of {', '.join(PRECISIONS)}")
        if self.max_batch < 1 or not 16 <= self.opt_tile <= self.max_tile:
            raise EdgesrError("tensorrt: needs max_batch >= 1 and 16 <= opt_tile <= max_tile")

    def build_options(self):
        """The engine-cache BuildOptions this config asks for."""
        from edgesr.runtimes.engine_cache import BuildOptions, ShapeProfile

        if self.tile is not None:
            profile = ShapeProfile(min_hw=self.tile, opt_hw=self.tile, max_hw=self.tile,
                                   batch=(1, self.max_batch, self.max_batch))
        else:
            profile = ShapeProfile(min_hw=(16, 16), opt_hw=(self.opt_tile, self.opt_tile),
                                   max_hw=(self.max_tile, self.max_tile),
                                   batch=(1, self.max_batch, self.max_batch))
        return BuildOptions(precision=self.precision, profile=profile, device=str(self.device),
                            workspace_mb=self.workspace_mb)


class TensorRTRuntime(Runtime):
    """Runs a TensorRT plan (or an ONNX model, built and cached first)."""

    name = "tensorrt"

    def __init__(self, model: str | Path, config: TensorRTConfig | None = None):
        super().__init__()
        self.model_path = Path(model)
        self.config = config or TensorRTConfig()
        self.plan_path: Path | None = None
        self._runtime = self._engine = self._context = self._stream = None
        self._device_buffers: list[int] = []
        self._host: dict[str, np.ndarray] = {}

    def activate_impl(self) -> RuntimeInfo:
        reason = unavailable_reason()
        if reason:
            raise BackendUnavailableError(f"tensorrt: {reason}")
        if self.model_path.suffix in PLAN_SUFFIXES:
            self.plan_path = self.model_path
        else:
            from edgesr.runtimes.engine_cache import build_engine

            self.plan_path = build_engine("tensorrt", self.model_path,
                                          self.config.build_options()).artifact
        rt = cudart()
        cuda_call(rt.cudaSetDevice(self.config.device))
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self._engine is None:
            raise TensorRTError(f"{self.plan_path}: not a TensorRT plan for this TensorRT "
                                f"version and GPU; rebuild it")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names
                  if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._in, self._out = inputs[0], next(n for n in names if n not in inputs)
        lo, opt, hi = (tuple(s) for s in self._engine.get_tensor_profile_shape(self._in, 0))
        self._min, self._max = lo, hi
        self._context.set_input_shape(self._in, hi)
        out_max = tuple(self._context.get_tensor_shape(self._out))
        meta = self._metadata(out_max[2] // hi[2], out_max[1])
        try:
            self._stream = cuda_call(rt.cudaStreamCreate())
            for name, shape in ((self._in, hi), (self._out, out_max)):
                host = np.empty(shape, trt.nptype(self._engine.get_tensor_dtype(name)))
                cuda_call(rt.cudaHostRegister(host.ctypes.data, host.nbytes, 0))
                self._host[name] = host
                self._device_buffers.append(cuda_call(rt.cudaMalloc(host.nbytes)))
                self._context.set_tensor_address(name, self._device_buffers[-1])
        except TensorRTError:
            self.deactivate_impl()  # free what was allocated before the failure
            raise
        fixed = lo[2:] == hi[2:]
        return RuntimeInfo(scale=meta["scale"], in_channels=hi[1], out_channels=out_max[1],
                           fixed_hw=tuple(hi[2:]) if fixed else None,
                           size_multiple=meta.get("size_multiple", 1),
                           preferred_batch=opt[0], max_batch=hi[0],
                           precision=meta.get("precision", None if self.model_path.suffix
                                              in PLAN_SUFFIXES else self.config.precision),
                           device=f"cuda:{self.config.device}")

    def _metadata(self, scale: int, out_channels: int) -> dict:
        """The plan's sidecar metadata, else what its shapes tell."""
        sidecar = self.plan_path.with_suffix(".json")
        if sidecar.is_file():
            return json.loads(sidecar.read_text())
        return {"scale": scale, "out_channels": out_channels}

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        n, _, h, w = batch.shape
        if not (self._min[2] <= h <= self._max[2] and self._min[3] <= w <= self._max[3]):
            raise InferenceError(f"tensorrt: a {h}x{w} tile is outside the engine's profile "
                                 f"{self._min[2]}x{self._min[3]}..{self._max[2]}x{self._max[3]}")
        step = self._max[0]
        return np.concatenate([self._run(batch[i:i + step]) for i in range(0, n, step)])

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        rt = cudart()
        kind = rt.cudaMemcpyKind
        self._context.set_input_shape(self._in, chunk.shape)
        out_shape = tuple(self._context.get_tensor_shape(self._out))
        host_in = _view(self._host[self._in], chunk.shape)
        host_out = _view(self._host[self._out], out_shape)
        host_in[...] = chunk
        d_in, d_out = self._device_buffers
        cuda_call(rt.cudaMemcpyAsync(d_in, host_in.ctypes.data, host_in.nbytes,
                                     kind.cudaMemcpyHostToDevice, self._stream))
        if not self._context.execute_async_v3(int(self._stream)):
            raise InferenceError("tensorrt: execute_async_v3 failed (see the TensorRT log)")
        cuda_call(rt.cudaMemcpyAsync(host_out.ctypes.data, d_out, host_out.nbytes,
                                     kind.cudaMemcpyDeviceToHost, self._stream))
        cuda_call(rt.cudaStreamSynchronize(self._stream))
        return host_out.astype(np.float32)  # a copy: the pinned buffer is reused

    def deactivate_impl(self) -> None:
        rt = cudart()
        for host in self._host.values():
            rt.cudaHostUnregister(host.ctypes.data)
        for pointer in self._device_buffers:
            rt.cudaFree(pointer)
        if self._stream is not None:
            rt.cudaStreamDestroy(self._stream)
        self._host, self._device_buffers = {}, []
        self._context = self._engine = self._runtime = self._stream = None


def _view(buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The leading part of a max-shape pinned buffer, as a contiguous array of ``shape``."""
    return buffer.reshape(-1)[:int(np.prod(shape))].reshape(shape)
