"""TensorRT: without TensorRT or a GPU the backend imports and says why it is unavailable;
with them (skipped here, with the reason) FP32/FP16 engines match PyTorch and are cached."""

import numpy as np
import pytest
import torch
from tiny_models import make_tiny

from edgesr.errors import BackendUnavailableError
from edgesr.runtimes import create_runtime
from edgesr.runtimes.engine_cache import BuildOptions, EngineCache, ShapeProfile, build_engine
from edgesr.runtimes.tensorrt_build import unavailable_reason
from edgesr.runtimes.tensorrt_runtime import TensorRTConfig, TensorRTRuntime

REASON = unavailable_reason()
needs_gpu = pytest.mark.skipif(REASON is not None, reason=f"TensorRT unavailable: {REASON}")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import model_from_state_dict

    desc = model_from_state_dict(make_tiny("compact_x4").state_dict())
    path = tmp_path_factory.mktemp("trt") / "compact_x4.onnx"
    export_onnx(desc, path, check=False)
    return desc, path


@pytest.mark.skipif(REASON is None, reason="TensorRT is available here")
def test_unavailable_is_one_clear_error(tmp_path):
    assert "tensorrt" in REASON or "CUDA" in REASON or "cuda" in REASON
    runtime = create_runtime("tensorrt", tmp_path / "model.plan")
    with pytest.raises(BackendUnavailableError, match="tensorrt: "):
        runtime.activate()
    (tmp_path / "m.onnx").write_bytes(b"\0")
    with pytest.raises(BackendUnavailableError, match="tensorrt: "):
        build_engine("tensorrt", tmp_path / "m.onnx", cache=EngineCache(tmp_path / "c"))


def test_config_builds_the_profile():
    dynamic = TensorRTConfig(max_batch=2, opt_tile=128).build_options().profile
    assert dynamic.label == "b1-2-2_16x16-128x128-512x512"
    fixed = TensorRTConfig(tile=(64, 64), max_batch=4).build_options().profile
    assert fixed.min_hw == fixed.max_hw == (64, 64) and fixed.batch == (1, 4, 4)


@needs_gpu
@pytest.mark.parametrize("precision,max_diff", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_engine_parity_with_torch(tiny_onnx, tmp_path, monkeypatch, precision, max_diff):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path))
    desc, onnx_path = tiny_onnx
    x = np.random.default_rng(0).random((5, 3, 48, 40), np.float32)
    config = TensorRTConfig(precision=precision, max_batch=2, opt_tile=64, max_tile=128)
    with TensorRTRuntime(onnx_path, config) as rt:
        assert rt.info.scale == 4 and rt.info.max_batch == 2 and rt.info.dynamic
        assert rt.info.precision == precision
        out = rt.infer(x)  # 5 images through a max-batch-2 engine: three runs
    with torch.no_grad():
        ref = desc.model(torch.from_numpy(x)).numpy()
    assert np.abs(out - ref).max() < max_diff


@needs_gpu
def test_engine_is_cached(tiny_onnx, tmp_path):
    _, onnx_path = tiny_onnx
    cache = EngineCache(tmp_path)
    options = BuildOptions(precision="fp16", profile=ShapeProfile.fixed(32, batch=1))
    first = build_engine("tensorrt", onnx_path, options, cache=cache)
    second = build_engine("tensorrt", onnx_path, options, cache=cache)
    assert first.built and not second.built
    assert first.artifact.with_suffix(".json").is_file()
    assert list((tmp_path / "tensorrt").glob("timing-*.cache"))


class FakeCudart:
    """cuda-python's runtime API over host bytearrays: enough to run TensorRTRuntime's buffer
    logic (pinning, async copies, chunking) on a machine without a GPU."""

    class cudaMemcpyKind:  # noqa: N801 - cuda-python's name
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self):
        self.mem: dict[int, bytearray] = {}
        self.pinned: set[int] = set()

    def cudaSetDevice(self, device):  # noqa: N802
        return (0,)

    def cudaStreamCreate(self):  # noqa: N802
        return 0, 7

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        return (0,)

    def cudaMalloc(self, size):  # noqa: N802
        pointer = 1000 + len(self.mem)
        self.mem[pointer] = bytearray(size)
        return 0, pointer

    def cudaFree(self, pointer):  # noqa: N802
        del self.mem[pointer]
        return (0,)

    def cudaHostRegister(self, pointer, size, flags):  # noqa: N802
        self.pinned.add(pointer)
        return (0,)

    def cudaHostUnregister(self, pointer):  # noqa: N802
        self.pinned.discard(pointer)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):  # noqa: N802
        import ctypes

        if kind == 1:
            self.mem[dst][:count] = ctypes.string_at(src, count)
        else:
            ctypes.memmove(dst, bytes(self.mem[src][:count]), count)
        return (0,)


class FakeTensorRT:
    """The slice of the tensorrt module the runtime uses; the 'engine' is a nearest x2."""

    __version__ = "10.fake"
    PROFILE = [(1, 3, 8, 8), (2, 3, 16, 16), (2, 3, 32, 32)]

    class Logger:
        WARNING = 0

        def __init__(self, severity):
            pass

    class TensorIOMode:
        INPUT, OUTPUT = "input", "output"

    def __init__(self, cuda: FakeCudart):
        self.cuda = cuda
        fake = self

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                return fake if data == b"plan" else None

        self.Runtime = Runtime

    @staticmethod
    def nptype(dtype):
        return dtype

    # engine
    num_io_tensors = 2

    def get_tensor_name(self, i):
        return ("input", "output")[i]

    def get_tensor_mode(self, name):
        return name

    def get_tensor_profile_shape(self, name, profile):
        return self.PROFILE

    def get_tensor_dtype(self, name):
        return np.float32

    def create_execution_context(self):
        self.shape, self.address = None, {}
        return self

    # execution context
    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)

    def get_tensor_shape(self, name):
        n, c, h, w = self.shape
        return (n, c, 2 * h, 2 * w)

    def set_tensor_address(self, name, pointer):
        self.address[name] = pointer

    def execute_async_v3(self, stream):
        size = int(np.prod(self.shape))
        x = np.frombuffer(bytes(self.cuda.mem[self.address["input"]]), np.float32)[:size]
        y = x.reshape(self.shape).repeat(2, axis=2).repeat(2, axis=3)
        self.cuda.mem[self.address["output"]][:y.nbytes] = y.tobytes()
        return True


def test_runtime_buffers_and_chunking_with_a_fake_gpu(tmp_path, monkeypatch):
    from edgesr.errors import InferenceError
    from edgesr.runtimes import tensorrt_runtime
    from edgesr.runtimes.tensorrt_build import TensorRTError

    cuda = FakeCudart()
    monkeypatch.setattr(tensorrt_runtime, "trt", FakeTensorRT(cuda))
    monkeypatch.setattr(tensorrt_runtime, "cudart", lambda: cuda)
    monkeypatch.setattr(tensorrt_runtime, "unavailable_reason", lambda: None)
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"plan")
    plan.with_suffix(".json").write_text('{"scale": 2, "size_multiple": 1}')
    x = np.random.default_rng(0).random((5, 3, 12, 20), np.float32)
    with TensorRTRuntime(plan) as rt:
        assert (rt.info.scale, rt.info.max_batch, rt.info.preferred_batch) == (2, 2, 2)
        assert rt.info.dynamic and len(cuda.pinned) == 2 and len(cuda.mem) == 2
        np.testing.assert_array_equal(rt.infer(x), x.repeat(2, axis=2).repeat(2, axis=3))
        with pytest.raises(InferenceError, match="outside the engine's profile"):
            rt.infer(np.zeros((1, 3, 40, 8), np.float32))
    assert not cuda.mem and not cuda.pinned
    plan.write_bytes(b"junk")
    with pytest.raises(TensorRTError, match="not a TensorRT plan"):
        TensorRTRuntime(plan).activate()


class _FakeTimingCache:
    """Stands in for ``trt.ITimingCache``: a set of measured tactics, serialised one a line."""

    def __init__(self, data: bytes = b""):
        self.entries = set(data.decode().split())

    def combine(self, other: "_FakeTimingCache", ignore_mismatch: bool) -> bool:
        self.entries |= other.entries
        return True

    def serialize(self) -> bytes:
        return "\n".join(sorted(self.entries)).encode()


class _FakeConfig:
    def __init__(self, measured: str):
        self.cache = _FakeTimingCache(measured.encode())

    def get_timing_cache(self) -> _FakeTimingCache:
        return self.cache

    def create_timing_cache(self, data: bytes) -> _FakeTimingCache:
        return _FakeTimingCache(data)


def test_timing_cache_merges_what_each_builder_measured(tmp_path):
    """Two builders that started from the same (empty) timing cache both keep their tactics:
    the second merges the file the first wrote, under the cache's lock."""
    from edgesr.runtimes.tensorrt_build import _save_timing_cache

    path = tmp_path / "timing-gpu.cache"
    _save_timing_cache(_FakeConfig("conv-a conv-b"), path)
    _save_timing_cache(_FakeConfig("conv-b conv-c"), path)
    assert path.read_bytes().split() == [b"conv-a", b"conv-b", b"conv-c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timing-gpu.cache",
                                                          "timing-gpu.cache.lock"]
