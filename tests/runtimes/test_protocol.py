"""The runtime protocol, checked the same way on every registered backend that runs a
single-pass upscaler and is available here (plugins included); the others are skipped with the
reason (``edgesr backends``'s), or because they run another model kind (tested on their own)."""

import importlib.util

import numpy as np
import pytest
import torch
from tiny_models import make_tiny

from edgesr.errors import (
    BackendUnavailableError,
    CheckpointError,
    EdgesrError,
    InferenceError,
    RuntimeStateError,
)
from edgesr.export.onnx_export import export_onnx
from edgesr.models import load_model
from edgesr.runtimes import Runtime, create_runtime
from edgesr.runtimes.registry import entries

BACKENDS = tuple(entries())


def _skip_reason(name: str) -> str | None:
    """Why the suite cannot run ``name`` here, or None."""
    from edgesr.commands.backends import probe

    backend = entries()[name]
    if "upscaler" not in backend.kinds:
        return f"{name} runs {', '.join(backend.kinds)} models, not the suite's upscaler"
    if not {".pth", ".onnx", ".param"} & set(backend.suffixes):
        return f"{name} runs neither checkpoints, ONNX nor ncnn files"
    ok, detail = probe(name)
    return None if ok else f"{name} unavailable: {detail}"


AVAILABLE = tuple(name for name in BACKENDS if _skip_reason(name) is None)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """backend -> the tiny compact x2 model in a file format that backend runs (a checkpoint
    when it runs checkpoints, else the ONNX export, else the ncnn export)."""
    folder = tmp_path_factory.mktemp("models")
    checkpoint = folder / "tiny_x2.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, checkpoint)
    export_onnx(load_model(checkpoint), folder / "tiny_x2.onnx", check=False)
    files = {}
    for name in AVAILABLE:
        suffixes = entries()[name].suffixes
        files[name] = (checkpoint if ".pth" in suffixes else folder / "tiny_x2.onnx"
                       if ".onnx" in suffixes else _ncnn_export(checkpoint, folder))
    return files


def _ncnn_export(checkpoint, folder):
    from edgesr.export.ncnn_export import export_ncnn

    return export_ncnn(load_model(checkpoint), folder / "tiny_x2.param").param_path


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    reason = _skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


def test_the_suite_covers_the_backends_of_this_machine():
    assert {"torch", "onnxruntime"} <= set(AVAILABLE)
    for optional in ("openvino", "ncnn"):
        if importlib.util.find_spec(optional) is not None:
            assert optional in AVAILABLE


@pytest.fixture
def runtime(backend, model_files) -> Runtime:
    """An inactive runtime of ``backend``."""
    return create_runtime(backend, model_files[backend])


#: Tolerance against torch FP32 of backends whose default precision is below FP32.
_ATOL = {"tensorrt": 1e-2, "coreml": 1e-2}
#: Default precision of the built-in backends that do not default to FP32.
_DEFAULT_PRECISION = {"tensorrt": "fp16", "coreml": "fp16"}


def _batch(rng, n=2, c=3, h=6, w=7) -> np.ndarray:
    return rng.random((n, c, h, w), np.float32)


def test_use_before_activate_raises(runtime, rng):
    assert not runtime.is_active
    with pytest.raises(RuntimeStateError, match="infer\\(\\) called on an inactive runtime"):
        runtime.infer(_batch(rng))
    with pytest.raises(RuntimeStateError, match="info\\(\\)"):
        _ = runtime.info


def test_use_after_deactivate_raises(runtime, rng):
    runtime.activate()
    runtime.deactivate()
    with pytest.raises(RuntimeStateError):
        runtime.infer(_batch(rng))


def test_context_manager_and_idempotence(runtime, rng):
    with runtime as active:
        assert active is runtime and runtime.is_active
        assert runtime.activate() is runtime  # a second activate() is a no-op
        out = runtime.infer(_batch(rng))
    assert not runtime.is_active
    runtime.deactivate()  # and so is a second deactivate()
    assert out.shape == (2, 3, 12, 14) and out.dtype == np.float32


def test_info_and_input_conversion(runtime, rng):
    with runtime:
        info = runtime.info
        assert (info.scale, info.in_channels, info.out_channels) == (2, 3, 3)
        assert info.dynamic and info.size_multiple == 1
        batch = _batch(rng, h=8, w=8).astype(np.float64).transpose(0, 1, 3, 2)  # not contiguous
        assert runtime.infer(batch).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("shape", [(1, 4, 6, 6), (3, 6, 6), (1, 1, 3, 6, 6)])
def test_bad_batch_shape_raises_inference_error(runtime, rng, shape):
    with runtime:
        with pytest.raises(InferenceError, match="expected an NCHW batch with 3 channels"):
            runtime.infer(rng.random(shape, np.float32))


def test_backends_agree(backend, model_files, rng):
    batch = _batch(rng, n=3, h=9, w=5)
    with create_runtime("torch", model_files["torch"]) as reference:
        expected = reference.infer(batch)
    with create_runtime(backend, model_files[backend]) as runtime:  # at its default precision
        np.testing.assert_allclose(runtime.infer(batch), expected, atol=_ATOL.get(backend, 1e-4))


def test_info_reports_the_precision_that_ran(backend, model_files, rng):
    """``RuntimeInfo.precision`` is the one place bench, compare and describe() read it from."""
    with create_runtime(backend, model_files[backend]) as runtime:
        runtime.infer(_batch(rng))
        ran = runtime.info.precision
    if entries()[backend].plugin is None:
        assert ran == _DEFAULT_PRECISION.get(backend, "fp32")
    else:  # a plugin reports one of edgesr's names, or None when its backend cannot tell
        assert ran in (None, "fp32", "fp16", "bf16", "int8", "mixed")


def test_unknown_config_option(backend, model_files):
    with pytest.raises(EdgesrError, match=f"backend '{backend}' has no option"):
        create_runtime(backend, model_files[backend], no_such_option=1)


def test_missing_model_file(backend, model_files, tmp_path):
    missing = tmp_path / f"missing{model_files[backend].suffix}"
    with pytest.raises(CheckpointError, match="not found"):
        create_runtime(backend, missing).activate()


def test_unknown_backend(model_files):
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tflite'; available: "):
        create_runtime("tflite", model_files["torch"])
