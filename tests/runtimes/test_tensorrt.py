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
