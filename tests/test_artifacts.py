"""``edgesr.artifacts`` and ``edgesr info``: every kind of file edgesr writes is described."""

import json

import pytest
from conftest import tiny_descriptor

from edgesr.artifacts import DESCRIBERS, describe, format_description
from edgesr.cli import main
from edgesr.runtimes.registry import entries


def test_every_artifact_suffix_of_every_backend_has_a_describer():
    suffixes = {s for e in entries().values() for s in (*e.suffixes, *e.artifacts)}
    assert suffixes <= DESCRIBERS.keys()


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """fp32, fp16 and int8 (Q/DQ) ONNX files of tiny compact x2."""
    from edgesr.calibration import build_calibration_set
    from edgesr.export.onnx_export import export_onnx
    from edgesr.export.quantize_fp16 import convert_fp16
    from edgesr.export.quantize_int8 import quantize_int8

    folder = tmp_path_factory.mktemp("artifacts")
    fp32 = export_onnx(tiny_descriptor("compact_x2"), folder / "fp32.onnx", check=False).path
    convert_fp16(fp32, folder / "fp16.onnx")
    quantize_int8(fp32, folder / "int8.onnx", build_calibration_set(count=2, tile=16, seed=0))
    return {p: folder / f"{p}.onnx" for p in ("fp32", "fp16", "int8")}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_onnx_io_dynamic_axes_opset_precision_and_metadata(onnx_files, precision):
    doc = describe(onnx_files[precision])
    assert doc["format"] == "ONNX" and doc["weight_precision"] == precision
    (inp,) = doc["inputs"]
    assert inp["shape"][1] == 3 and inp["dynamic_axes"] == [0, 2, 3]
    assert doc["opset"]["ai.onnx"] >= 13
    assert doc["metadata"]["arch"] == "SRVGGNetCompact" and doc["metadata"]["scale"] == 2
    assert (doc["qdq_nodes"] > 0) == (precision == "int8")


def test_info_json_and_text_agree(onnx_files, capsys):
    assert main(["info", str(onnx_files["fp16"]), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["weight_precision"] == "fp16" and captured.err == ""
    assert main(["info", str(onnx_files["fp16"])]) == 0
    text = capsys.readouterr().out
    assert "weight_precision: fp16" in text and "dynamic_axes [0, 2, 3]" in text


def test_openvino_ir_and_its_compiled_model(onnx_files, tmp_path):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from edgesr.runtimes.engine_cache import (
        BuildOptions,
        EngineCache,
        ShapeProfile,
        build_engine,
    )

    dynamic = build_engine("openvino", onnx_files["fp32"], BuildOptions(precision="fp16"),
                           cache=EngineCache(tmp_path)).artifact
    doc = describe(dynamic)
    assert doc["format"] == "OpenVINO IR" and doc["weight_precision"] == "fp16"
    assert doc["inputs"][0]["dynamic_axes"] == [0, 2, 3] and doc["inputs"][0]["type"] == "f32"
    assert doc["rt_info"]["ir_precision"] == "fp16" and doc["compiled_model"] is None
    assert doc["engine_cache_key"]["profile"] == "dynamic"
    fixed = build_engine("openvino", onnx_files["fp32"],
                         BuildOptions(precision="fp32", profile=ShapeProfile.fixed(16)),
                         cache=EngineCache(tmp_path)).artifact
    doc = describe(fixed)
    assert doc["inputs"][0]["shape"] == [1, 3, 16, 16] and doc["inputs"][0]["dynamic_axes"] == []
    assert doc["compiled_model"]["device"] == "CPU" and doc["compiled_model"]["usable_here"]
    assert "compiled_model:\n  device: CPU" in format_description(doc)


def test_ncnn_param_layers_and_architecture(tmp_path):
    from edgesr.export.ncnn_export import export_ncnn

    param = tmp_path / "x2.param"
    export_ncnn(tiny_descriptor("compact_x2"), param)
    doc = describe(param)
    assert doc["format"] == "ncnn" and doc["layers"] > 0 and doc["inputs"]
    assert doc["architecture"]["scale"] == 2 and doc["weights"].startswith("x2.bin")


def test_tensorrt_plan_is_described_from_its_sidecar(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\0" * 64)  # TensorRT itself is not read: the sidecar says what it is
    assert "no model.json beside it" in describe(plan)["metadata"]
    meta = {"arch": "SRVGGNetCompact", "scale": 2, "precision": "fp16", "tensorrt": "10.0",
            "profile": "b1_64x64"}
    plan.with_suffix(".json").write_text(json.dumps(meta))
    doc = describe(plan)
    assert doc["metadata"] == meta and doc["size_bytes"] == 64


def test_coreml_package_spec(tmp_path):
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    from edgesr.runtimes.coreml_convert import convert

    package = convert(tiny_descriptor("compact_x2"), tmp_path / "x2.mlpackage", precision="fp16")
    doc = describe(package)
    assert doc["format"] == "CoreML package" and doc["compute_precision"] == "fp16"
    assert doc["metadata"]["scale"] == "2"


@pytest.mark.parametrize(("name", "message"), [
    ("notes.txt", "edgesr describes"),
    ("missing.onnx", "not found"),
])
def test_what_is_not_an_artifact_is_one_line(tmp_path, capsys, name, message):
    if name.endswith(".txt"):
        (tmp_path / name).write_text("hello")
    assert main(["info", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_checkpoint_description_is_json_able(tmp_path, capsys):
    import torch
    from tiny_models import make_tiny

    checkpoint = tmp_path / "x2.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, checkpoint)
    assert main(["info", str(checkpoint), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"].startswith("SRVGGNetCompact x2") and doc["scale"] == 2
    assert doc["size_multiple"] == 1


def test_ncnn_model_of_an_unknown_architecture_is_still_described(tmp_path):
    param = tmp_path / "other.param"
    param.write_text("7767517\n2 2\nInput in 0 1 data 0=8 1=8 2=3\nReLU relu 1 1 data out\n")
    param.with_suffix(".bin").write_bytes(b"")
    doc = describe(param)
    assert doc["layers"] == 2 and doc["inputs"] == ["in"]
    assert doc["layer_types"] == {"Input": 1, "ReLU": 1}
    assert doc["architecture"].startswith("not detected (")
