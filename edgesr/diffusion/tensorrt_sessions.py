"""TensorRT sessions for the samplers: each graph (UNet, VAE decoder, SR3 denoiser) built into an
engine through the engine cache, with one dynamic profile over latent sizes and batch 1-2 (2:
the unconditional and the conditional pass of classifier-free guidance).

The build (this module is the sampler backends' ``engine_cache.Builder``) gives every dynamic
dimension of every input a range: the batch dimension ``profile.batch``, a 4-D input's height
and width ``profile.min_hw``..``max_hw`` (latent pixels), any other dimension (the text
sequence) 1..``MAX_SEQUENCE``. A ``.plan`` beside the graph (``unet.plan`` beside
``unet.onnx``, what ``edgesr build ... -o DIR`` writes) is loaded as it is instead. FP16 sets
the builder's FP16 flag (TensorRT < 11); an FP16 graph from ``edgesr quantize`` builds strongly
typed. Needs TensorRT, cuda-python and an NVIDIA GPU;
without them a sampler backend on it is one line saying which is missing.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgesr.diffusion.sessions import SessionFactory, onnx_metadata
from edgesr.errors import BackendUnavailableError, EdgesrError, InferenceError

#: The longest text-embedding sequence an engine accepts (CLIP's 77 tokens).
MAX_SEQUENCE = 77
PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True, kw_only=True)
class TensorRTSessionOptions:
    """``precision``: fp16 (default) or fp32; ``gpu``: the CUDA device index; ``min_latent``/
    ``opt_latent``/``max_latent``: the engine's range of latent sizes (= low-res tile pixels
    for SD x4; output pixels for SR3), square bounds; ``max_batch``: 1 or 2;
    ``workspace_mb``: the builder's workspace limit."""

    precision: str = "fp16"
    gpu: int = 0
    min_latent: int = 16
    opt_latent: int = 64
    max_latent: int = 128
    max_batch: int = 2
    workspace_mb: int = 4096
    #: ``edgesr build`` flags -> these options (``edgesr.diffusion.engines``).
    BUILD_FIELDS: ClassVar[dict[str, str]] = {
        "min_tile": "min_latent", "opt_tile": "opt_latent", "max_tile": "max_latent",
        "batch": "max_batch", "device": "gpu", "workspace_mb": "workspace_mb"}

    @property
    def where(self) -> str:
        """The device it runs on, as the upscale line names it."""
        return f"cuda:{self.gpu}"

    def check_engine(self, backend: str) -> None:
        if self.precision not in PRECISIONS:
            raise EdgesrError(f"{backend}: precision must be one of {', '.join(PRECISIONS)}, "
                              f"not {self.precision!r}")
        if not (1 <= self.min_latent <= self.opt_latent <= self.max_latent) \
                or self.max_batch not in (1, 2):
            raise EdgesrError(f"{backend}: need 1 <= min_latent <= opt_latent <= max_latent and "
                              "max_batch 1 or 2")

    def build_options(self):
        from edgesr.runtimes.engine_cache import BuildOptions, ShapeProfile

        hw = [(n, n) for n in (self.min_latent, self.opt_latent, self.max_latent)]
        profile = ShapeProfile(min_hw=hw[0], opt_hw=hw[1], max_hw=hw[2],
                               batch=(1, self.max_batch, self.max_batch))
        return BuildOptions(precision=self.precision, profile=profile, device=str(self.gpu),
                            workspace_mb=self.workspace_mb)

    def sessions(self, backend: str) -> SessionFactory:
        from edgesr.runtimes.tensorrt_build import unavailable_reason

        reason = unavailable_reason()
        if reason:
            raise BackendUnavailableError(f"{backend}: {reason}")
        options = self.build_options()

        def open_session(path: Path) -> "TensorRTSession":
            from edgesr.runtimes.engine_cache import build_engine

            beside = path.with_suffix(".plan")
            plan = beside if beside.is_file() else build_engine(backend, path, options).artifact
            return TensorRTSession(plan, onnx_metadata(path), self.gpu, self.precision)

        return open_session


class TensorRTSession:
    """A Session on a deserialized engine; device buffers are sized per call, and a batch past
    the profile's (latent windows stacked by ``latent_tiling``) runs in chunks."""

    def __init__(self, plan: Path, metadata: dict[str, str], gpu: int, precision: str) -> None:
        import tensorrt as trt

        from edgesr.runtimes.tensorrt_build import cuda_call, cudart

        cuda_call(cudart().cudaSetDevice(gpu))
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise EdgesrError(f"{plan}: not a TensorRT plan for this TensorRT version and GPU")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names
                       if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self._metadata = metadata
        self.precision = precision
        self._trt = trt
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.inputs[0], 0)[2][0])

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        count, step = len(next(iter(inputs.values()))), self.max_batch
        if count <= step:
            return self._run(inputs)
        chunks = [self._run({k: v[i:i + step] for k, v in inputs.items()})
                  for i in range(0, count, step)]
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        from edgesr.runtimes.tensorrt_build import cuda_call, cudart

        rt, trt = cudart(), self._trt
        kind = rt.cudaMemcpyKind
        arrays = {n: np.ascontiguousarray(inputs[n], trt.nptype(self.engine.get_tensor_dtype(n)))
                  for n in self.inputs}
        for name, array in arrays.items():
            self.context.set_input_shape(name, array.shape)
        for name in self.outputs:
            arrays[name] = np.empty(tuple(self.context.get_tensor_shape(name)),
                                    trt.nptype(self.engine.get_tensor_dtype(name)))
        pointers = []
        stream = cuda_call(rt.cudaStreamCreate())
        try:
            for name, array in arrays.items():
                pointers.append(cuda_call(rt.cudaMalloc(max(array.nbytes, 1))))
                self.context.set_tensor_address(name, pointers[-1])
                if name in self.inputs:
                    cuda_call(rt.cudaMemcpyAsync(pointers[-1], array.ctypes.data, array.nbytes,
                                                 kind.cudaMemcpyHostToDevice, stream))
            if not self.context.execute_async_v3(int(stream)):
                raise InferenceError("tensorrt: execute_async_v3 failed (see the TensorRT log)")
            for name, pointer in zip(arrays, pointers, strict=False):
                if name in self.outputs:
                    array = arrays[name]
                    cuda_call(rt.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes,
                                                 kind.cudaMemcpyDeviceToHost, stream))
            cuda_call(rt.cudaStreamSynchronize(stream))
        finally:
            for pointer in pointers:
                rt.cudaFree(pointer)
            rt.cudaStreamDestroy(stream)
        return [arrays[n].astype(np.float32) for n in self.outputs]

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)


# This module is the TensorRT sampler backends' ``engine_cache.Builder``.
def identity(options) -> tuple[str, str, str]:
    """(version, device, profile) of a build; needs TensorRT and a GPU."""
    import tensorrt as trt

    from edgesr.runtimes.tensorrt_build import device_label, require_tensorrt, use_device

    require_tensorrt()
    return trt.__version__, device_label(use_device(options.device)), options.profile.label


def input_ranges(shape: tuple[int, ...], profile) -> list[tuple[int, ...]]:
    """(min, opt, max) shapes of one input of ``shape`` (-1: dynamic), per the module
    docstring."""
    ranges = []
    for axis, size in enumerate(shape):
        if size >= 0:
            ranges.append((size, size, size))
        elif axis == 0:
            ranges.append(tuple(profile.batch))
        elif len(shape) == 4 and axis >= 2:
            ranges.append(tuple(hw[axis - 2] for hw in (profile.min_hw, profile.opt_hw,
                                                        profile.max_hw)))
        else:
            ranges.append((1, MAX_SEQUENCE, MAX_SEQUENCE))
    return [tuple(r[i] for r in ranges) for i in range(3)]


def build(source: Path, target: Path, options) -> None:
    """Build graph ``source`` into a serialized engine at ``target`` for ``options.profile``."""
    from edgesr.runtimes.tensorrt_build import parsed_network, require_tensorrt, use_device

    require_tensorrt()
    use_device(options.device)
    builder, network, config, _parser = parsed_network(source, precision=options.precision,
                                                       workspace_mb=options.workspace_mb)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        profile.set_shape(tensor.name, *input_ranges(tuple(tensor.shape), options.profile))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgesrError(f"{source}: TensorRT failed to build the engine (see its log)")
    target.write_bytes(memoryview(plan))
