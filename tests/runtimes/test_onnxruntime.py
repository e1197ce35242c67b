"""The ONNX Runtime backend: parity with PyTorch, RuntimeInfo from metadata or probing, errors."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import tiny_descriptor, torch_forward
from onnx import TensorProto, helper

from edgesr.errors import BackendUnavailableError, CheckpointError, EdgesrError, InferenceError
from edgesr.export.onnx_export import export_onnx
from edgesr.export.specs import spec_for
from edgesr.runtimes import create_runtime
from edgesr.runtimes.onnxruntime_runtime import OnnxRuntime, OnnxRuntimeConfig


def _strip_metadata(src, dst):
    model = onnx.load(str(src))
    del model.metadata_props[:]
    onnx.save(model, str(dst))
    return dst


value = helper.make_tensor_value_info


def _save_graph(path, node, inputs, output, initializers=()):
    graph = helper.make_graph([node], "g", inputs, [output], list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("family", ["rrdb_x1", "compact_x2", "resize_x3"])
def test_matches_torch(exported, family, rng):
    desc, path, _ = exported(family)
    multiple = desc.size_multiple
    x = rng.random((2, 3, 5 * multiple, 7 * multiple), np.float32)
    with OnnxRuntime(path) as runtime:
        out = runtime.infer(x)
        info = runtime.info
    assert (info.scale, info.size_multiple, info.fixed_hw, info.max_batch) == (
        desc.scale, multiple, None, None)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, torch_forward(desc, x), atol=spec_for(desc.architecture).atol)


def test_config_options(exported, rng):
    desc, path, _ = exported("compact_x2")
    x = rng.random((1, 3, 9, 11), np.float32)
    runtime = create_runtime("onnxruntime", path, threads=1, graph_optimization="disable",
                             preferred_batch=4, providers=("CPUExecutionProvider",))
    with runtime:
        assert runtime.info.preferred_batch == 4
        np.testing.assert_allclose(runtime.infer(x), torch_forward(desc, x), atol=1e-4)
    with pytest.raises(EdgesrError, match="unknown device 'npu'"):
        OnnxRuntimeConfig(device="npu")
    with pytest.raises(EdgesrError, match="unknown graph_optimization"):
        OnnxRuntimeConfig(graph_optimization="max")
    with pytest.raises(EdgesrError, match="threads"):
        OnnxRuntimeConfig(threads=-1)


@pytest.mark.parametrize("family", ["rrdb_x1", "resize_x3"])
def test_onnx_without_metadata_is_probed(exported, tmp_path, family):
    desc, path, _ = exported(family)
    foreign = _strip_metadata(path, tmp_path / "foreign.onnx")
    with OnnxRuntime(foreign) as runtime:
        assert (runtime.info.scale, runtime.info.size_multiple) == (desc.scale, desc.size_multiple)


def test_fp16_foreign_model(tmp_path, rng):
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    path = _save_graph(tmp_path / "fp16.onnx", node,
                       [value("x", TensorProto.FLOAT16, ["n", 3, "h", "w"])],
                       value("y", TensorProto.FLOAT16, None), [scales])
    x = rng.random((1, 3, 5, 6), np.float32)
    with OnnxRuntime(path) as runtime:
        assert (runtime.info.scale, runtime.info.size_multiple) == (2, 1)
        out = runtime.infer(x)
    assert out.dtype == np.float32
    expected = x.astype(np.float16).astype(np.float32).repeat(2, axis=2).repeat(2, axis=3)
    np.testing.assert_array_equal(out, expected)


def test_unprobeable_model(tmp_path):
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    path = _save_graph(tmp_path / "down.onnx", node,
                       [value("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
                       value("y", TensorProto.FLOAT, None))
    with pytest.raises(CheckpointError, match="cannot tell the model's scale"):
        OnnxRuntime(path).activate()


def test_not_an_image_model(tmp_path):
    node = helper.make_node("Add", ["a", "b"], ["y"])
    path = _save_graph(tmp_path / "add.onnx", node,
                       [value("a", TensorProto.FLOAT, [2]), value("b", TensorProto.FLOAT, [2])],
                       value("y", TensorProto.FLOAT, [2]))
    with pytest.raises(CheckpointError, match="expected one NCHW image input"):
        OnnxRuntime(path).activate()


def test_fixed_shape_model(tmp_path, rng):
    desc = tiny_descriptor("rrdb_x2")
    export_onnx(desc, tmp_path / "fixed.onnx", fixed_shape=(2, 12, 16), check=False)
    x = rng.random((3, 3, 12, 16), np.float32)
    with OnnxRuntime(tmp_path / "fixed.onnx") as runtime:
        info = runtime.info
        assert (info.fixed_hw, info.max_batch, info.preferred_batch) == ((12, 16), 2, 2)
        out = runtime.infer(x)  # 3 = one full batch of 2 + one padded batch
        with pytest.raises(InferenceError, match="12x16 inputs only, got 12x18"):
            runtime.infer(rng.random((1, 3, 12, 18), np.float32))
    np.testing.assert_allclose(out, torch_forward(desc, x), atol=spec_for("RRDBNet").atol)


def test_size_multiple_violation(exported, rng):
    with OnnxRuntime(exported("rrdb_x1")[1]) as runtime:
        with pytest.raises(InferenceError, match="not divisible by the model's size multiple 4"):
            runtime.infer(rng.random((1, 3, 18, 16), np.float32))


@pytest.mark.parametrize("content, message", [(None, "ONNX model not found"),
                                              (b"\x08\x07garbage" * 40, "cannot load it"),
                                              (b"", "cannot load it")])
def test_missing_or_corrupt_file(tmp_path, content, message):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        OnnxRuntime(path).activate()
    assert "\n" not in str(info.value)


def test_truncated_file(exported, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported("rrdb_x1")[1].read_bytes()[:4000])
    with pytest.raises(CheckpointError, match="truncated.onnx: ONNX Runtime cannot load it"):
        OnnxRuntime(truncated).activate()


@pytest.mark.parametrize("options", [{"device": "cuda"}, {"device": "tensorrt"},
                                     {"providers": ("CUDAExecutionProvider",)}])
def test_gpu_provider_unavailable(exported, options):
    wanted = OnnxRuntimeConfig(**options).execution_providers[0]
    if wanted in ort.get_available_providers():
        pytest.skip(f"{wanted} is available here")
    with pytest.raises(BackendUnavailableError, match=f"{wanted}.* not in this onnxruntime build"):
        create_runtime("onnxruntime", exported("compact_x2")[1], **options).activate()


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_provider_that_fails_to_start(exported, monkeypatch):
    """A provider listed as available that ONNX Runtime then drops is reported, not hidden."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider failed to start"):
        OnnxRuntime(exported("compact_x2")[1], OnnxRuntimeConfig(device="cuda")).activate()
