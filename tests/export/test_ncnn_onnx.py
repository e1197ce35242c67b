"""ncnn -> ONNX without PyTorch: the same graph as the PyTorch import + export on every bundled
model (outputs within 1e-5, metadata and dynamic axes equal), the cache, and bad input."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgesr.errors import CheckpointError, UnsupportedArchitectureError
from edgesr.export.ncnn_onnx import ncnn_to_onnx, onnx_for_ncnn
from edgesr.export.onnx_export import export_onnx
from edgesr.export.specs import decode_metadata, read_onnx_metadata
from edgesr.models.ncnn import load_ncnn_model
from edgesr.models.zoo import BUNDLED_MODELS, bundled_model_path

ATOL = 1e-5


def _run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _dims(value_infos) -> list[list]:
    return [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in value_infos]


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_converted_graph_equals_the_torch_export(tmp_path, name):
    param = bundled_model_path(name)
    converted = ncnn_to_onnx(param)
    reference = tmp_path / "torch.onnx"
    export_onnx(load_ncnn_model(param), reference, check=False)
    x = np.random.default_rng(0).random((2, 3, 19, 29), dtype=np.float32)
    out, ref = _run(converted.SerializeToString(), x), _run(str(reference), x)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= ATOL
    props = {p.key: p.value for p in converted.metadata_props}
    assert decode_metadata(props) == read_onnx_metadata(reference)
    proto = onnx.load(str(reference), load_external_data=False)
    assert _dims(converted.graph.input) == _dims(proto.graph.input)
    assert _dims(converted.graph.output) == _dims(proto.graph.output)
    assert converted.opset_import[0].version == proto.opset_import[0].version


def _copy_model(tmp_path, name="realesr-animevideov3-x2"):
    param = bundled_model_path(name)
    target = tmp_path / "m.param"
    shutil.copy(param, target)
    shutil.copy(param.with_suffix(".bin"), target.with_suffix(".bin"))
    return target


def test_cached_by_the_param_and_bin_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    param = _copy_model(tmp_path)
    first = onnx_for_ncnn(param)
    assert first.parent == tmp_path / "cache" / "onnx" and first.is_file()
    stamp = first.stat().st_mtime_ns
    assert onnx_for_ncnn(param) == first and first.stat().st_mtime_ns == stamp
    data = bytearray(param.with_suffix(".bin").read_bytes())
    data[-1] ^= 0xFF  # a different last bias: another file
    param.with_suffix(".bin").write_bytes(bytes(data))
    second = onnx_for_ncnn(param)
    assert second != first and second.is_file()
    assert read_onnx_metadata(second)["source_sha256"] != read_onnx_metadata(first)["source_sha256"]


def test_missing_bin_and_foreign_layers_are_refused(tmp_path):
    param = _copy_model(tmp_path)
    param.with_suffix(".bin").unlink()
    with pytest.raises(CheckpointError, match=r"\.bin not found"):
        ncnn_to_onnx(param)
    param = _copy_model(tmp_path)
    text = param.read_text().replace("PReLU", "ReLU", 1)
    param.write_text(text)
    with pytest.raises(UnsupportedArchitectureError, match="ReLU"):
        ncnn_to_onnx(param)


@pytest.mark.parametrize("name", ["rrdb_x2", "rrdb_x1", "compact_x2"])
def test_our_ncnn_exports_convert_like_the_torch_export(tmp_path, name):
    """RRDBNet x2/x1 start with a pixel-unshuffle (ncnn Reorg): converted without PyTorch, the
    graph gives the PyTorch model's output and the metadata its ONNX export records."""
    import torch
    from tiny_models import make_tiny

    from edgesr.export.ncnn_export import export_ncnn
    from edgesr.models import model_from_state_dict

    descriptor = model_from_state_dict(make_tiny(name).state_dict())
    param = export_ncnn(descriptor, tmp_path / "m.param").param_path
    reference = tmp_path / "torch.onnx"
    export_onnx(descriptor, reference, check=False)
    converted = ncnn_to_onnx(param)
    x = np.random.default_rng(1).random((1, 3, 12, 20), dtype=np.float32)
    with torch.no_grad():
        expected = descriptor.model.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(_run(converted.SerializeToString(), x) - expected).max() <= ATOL
    meta = decode_metadata({p.key: p.value for p in converted.metadata_props})
    ref = read_onnx_metadata(reference)
    for key in ("arch", "scale", "in_channels", "out_channels", "hyperparameters"):
        assert meta[key] == ref[key], key
