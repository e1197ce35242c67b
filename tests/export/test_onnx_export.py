"""ONNX export: parity for every tiny family, metadata, dynamic shapes, and clean failures."""

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import RESIZED, tiny_descriptor, torch_forward
from tiny_models import TINY_MODELS, make_tiny

from edgesr import __version__
from edgesr.errors import CheckpointError, ExportError
from edgesr.export import onnx_export
from edgesr.export.onnx_export import export_onnx
from edgesr.export.specs import (
    DEFAULT_SPEC,
    ExportSpec,
    decode_metadata,
    encode_metadata,
    read_onnx_metadata,
    spec_for,
)
from edgesr.models import load_model

FAMILIES = sorted(TINY_MODELS) + sorted(RESIZED)


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _only_file(folder, name):
    assert sorted(p.name for p in folder.iterdir()) == [name]


@pytest.mark.parametrize("family", FAMILIES)
def test_parity_every_family(exported, family):
    desc, path, report = exported(family)
    spec = spec_for(desc.architecture)
    assert report.path == path and path.is_file() and report.size_bytes == path.stat().st_size
    assert report.max_abs_diff <= spec.atol and report.psnr >= spec.min_psnr
    assert report.parity_shape[0] == 2 and report.parity_shape[2:] != report.trace_shape[2:]
    assert all(v % desc.size_multiple == 0 for v in report.parity_shape[2:])
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    assert not {"Identity", "Constant"} & {n.op_type for n in model.graph.node}


def test_metadata_round_trip(tmp_path, exported):
    checkpoint = tmp_path / "tiny.pth"
    torch.save({"params_ema": make_tiny("rrdb_x2").state_dict()}, checkpoint)
    desc = load_model(checkpoint)
    export_onnx(desc, tmp_path / "tiny.onnx", check=False)
    assert read_onnx_metadata(tmp_path / "tiny.onnx") == {
        "arch": "RRDBNet", "scale": 2, "in_channels": 3, "out_channels": 3, "size_multiple": 2,
        "source_sha256": desc.source_sha256, "version": __version__,
        "hyperparameters": desc.hyperparameters,
    }
    meta = read_onnx_metadata(exported("resize_x3")[1])
    assert meta["scale"] == 3 and meta["hyperparameters"]["upscale"] == 4
    assert meta["output_resize"] == {"factor": 0.75, "mode": "bicubic"}
    assert "source_sha256" not in meta  # an in-memory model has none


@pytest.mark.parametrize("family", ["rrdb_x1", "resize_x3"])
def test_dynamic_axes_named_and_really_dynamic(exported, family):
    desc, path, _ = exported(family)
    model = onnx.load(str(path))
    assert _dims(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert _dims(model.graph.output[0]) == ["batch", 3, "out_height", "out_width"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(2, 3, 20, 44), (1, 3, 52, 12)]:
        x = rng.random(shape, np.float32)
        out = session.run(None, {"input": x})[0]
        assert out.shape == (shape[0], 3, shape[2] * desc.scale, shape[3] * desc.scale)
        atol = spec_for(desc.architecture).atol
        np.testing.assert_allclose(out, torch_forward(desc, x), atol=atol)


def test_opset(tmp_path):
    desc = tiny_descriptor("compact_x2")
    report = export_onnx(desc, tmp_path / "m.onnx", opset=18)
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert report.opset == 18
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    with pytest.raises(ExportError, match="opset 16"):
        export_onnx(desc, tmp_path / "old.onnx", opset=16)
    _only_file(tmp_path, "m.onnx")


def _patch_graph(monkeypatch, corrupt):
    real = onnx_export.trace_to_onnx

    def patched(*args, **kwargs):
        proto = real(*args, **kwargs)
        corrupt(proto)
        return proto

    monkeypatch.setattr(onnx_export, "trace_to_onnx", patched)


def _shift_last_bias(proto: onnx.ModelProto) -> None:
    bias = next(i for i in reversed(proto.graph.initializer) if i.name.endswith("bias"))
    bias.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(bias) + 0.05, bias.name))


def _dangling_input(proto: onnx.ModelProto) -> None:
    proto.graph.node[-1].input[0] = "no_such_tensor"


@pytest.mark.parametrize("previous", [None, b"previous export"])
@pytest.mark.parametrize("corrupt, message", [
    (_shift_last_bias, r"parity check failed at input \(2, 3, 19, 29\): max abs diff .* PSNR"),
    (_dangling_input, "fails the ONNX checker"),
])
def test_failed_check_leaves_no_new_file(tmp_path, monkeypatch, corrupt, message, previous):
    target = tmp_path / "m.onnx"
    if previous is not None:
        target.write_bytes(previous)
    _patch_graph(monkeypatch, corrupt)
    with pytest.raises(ExportError, match=message) as info:
        export_onnx(tiny_descriptor("compact_x2"), target)
    assert "\n" not in str(info.value)
    if previous is None:
        assert list(tmp_path.iterdir()) == []
    else:
        assert target.read_bytes() == previous
        _only_file(tmp_path, "m.onnx")


def test_export_error_is_one_line(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom\nsecond line")

    desc = replace(tiny_descriptor("compact_x2"), model=Broken())
    with pytest.raises(ExportError, match="ONNX export failed: boom$"):
        export_onnx(desc, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="unknown exporter"):
        export_onnx(desc, tmp_path / "m.onnx", exporter="magic")
    assert list(tmp_path.iterdir()) == []


def test_oversized_model_refused_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PROTOBUF_LIMIT", 1024)
    with pytest.raises(ExportError, match="external-data export is not supported"):
        export_onnx(tiny_descriptor("rrdb_x4"), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unchecked_export_into_new_folder(tmp_path):
    target = tmp_path / "a" / "b" / "m.onnx"
    report = export_onnx(tiny_descriptor("compact_x2"), target, check=False)
    assert target.is_file() and report.max_abs_diff is None and report.parity_shape is None
    _only_file(target.parent, "m.onnx")


def test_fixed_shape(tmp_path):
    desc = tiny_descriptor("rrdb_x2")
    report = export_onnx(desc, tmp_path / "m.onnx", fixed_shape=(2, 24, 28))
    assert report.parity_shape == report.trace_shape == (2, 3, 24, 28)
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert _dims(model.graph.input[0]) == [2, 3, 24, 28]
    assert _dims(model.graph.output[0]) == [2, 3, 48, 56]
    with pytest.raises(ExportError, match="divisible by 2"):
        export_onnx(desc, tmp_path / "odd.onnx", fixed_shape=(1, 25, 28))


def test_dynamo_exporter(tmp_path):
    desc = tiny_descriptor("compact_x2")
    report = export_onnx(desc, tmp_path / "m.onnx", exporter="dynamo")
    assert report.exporter == "dynamo" and report.max_abs_diff <= spec_for(desc.architecture).atol
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert _dims(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert read_onnx_metadata(tmp_path / "m.onnx")["scale"] == 2


@pytest.mark.parametrize("multiple", [1, 2, 4, 8, 32])
def test_spec_sizes_honour_size_multiple(multiple):
    spec = spec_for("RRDBNet")
    trace, parity = spec.trace_size(multiple), spec.parity_size(multiple)
    assert all(v % multiple == 0 for v in trace + parity)
    assert trace != parity


def test_spec_registry_and_validation():
    assert spec_for("RRDBNet").architecture == "RRDBNet"
    assert spec_for("SomethingNew") is DEFAULT_SPEC
    with pytest.raises(ExportError, match="opset 16"):
        ExportSpec(architecture="x", opset=16)


def test_metadata_codec():
    values = {"arch": "X", "scale": 4, "hyperparameters": {"a": [1, 2]}, "source_sha256": None}
    props = encode_metadata(values)
    assert props == {"edgesr.arch": "X", "edgesr.scale": "4",
                     "edgesr.hyperparameters": '{"a": [1, 2]}'}
    assert decode_metadata({**props, "other.key": "ignored"}) == {
        "arch": "X", "scale": 4, "hyperparameters": {"a": [1, 2]}}
    with pytest.raises(CheckpointError, match="bad metadata edgesr.scale"):
        decode_metadata({"edgesr.scale": "four"}, "m.onnx")


@pytest.mark.parametrize("content, message", [(None, "not found"),
                                              (b"\x00garbage\xff" * 8, "not a readable ONNX"),
                                              (b"", "not an ONNX model")])
def test_read_metadata_of_bad_files(tmp_path, content, message):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_onnx_metadata(path)


def test_read_metadata_of_foreign_onnx(tmp_path, exported):
    model = onnx.load(str(exported("compact_x2")[1]))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    assert read_onnx_metadata(tmp_path / "foreign.onnx") == {}


def _with_props(tmp_path, source, props: dict):
    model = onnx.load(str(source))
    for key, value in props.items():
        entry = next((p for p in model.metadata_props if p.key == key), None)
        entry = entry or model.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("key, value", [("edgesr.size_multiple", "0"), ("edgesr.scale", "-4"),
                                        ("edgesr.scale", "100000"), ("edgesr.in_channels", "0"),
                                        ("edgesr.scale", "0")])
def test_metadata_out_of_range_is_refused(tmp_path, exported, key, value):
    path = _with_props(tmp_path, exported("compact_x2")[1], {key: value})
    with pytest.raises(CheckpointError, match=f"m.onnx: bad metadata {key}={value!r}: "):
        read_onnx_metadata(path)


def test_metadata_key_that_is_not_utf8_is_refused(tmp_path, exported):
    path = _with_props(tmp_path, exported("compact_x2")[1], {"edgesr.scale": "2"})
    path.write_bytes(path.read_bytes().replace(b"edgesr.scale", b"edgesr.sc\xffle"))
    with pytest.raises(CheckpointError, match="m.onnx: .*metadata .*not UTF-8"):
        read_onnx_metadata(path)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("broken", ["range", "utf8"])
def test_runtimes_refuse_bad_metadata(tmp_path, exported, backend, broken):
    pytest.importorskip(backend)
    from edgesr.runtimes import create_runtime

    value = "0" if broken == "range" else "2"
    path = _with_props(tmp_path, exported("compact_x2")[1], {"edgesr.size_multiple": value})
    if broken == "utf8":
        data = path.read_bytes().replace(b"edgesr.size_multiple", b"edgesr.size\xffmultiple")
        path.write_bytes(data)
    with pytest.raises(CheckpointError, match="m.onnx: .*metadata"):
        create_runtime(backend, path).activate()
