"""OpenVINO artifacts: NNCF INT8 close to FP32, kept nodes (and presets) stay float, BF16 hint."""

import onnx
import openvino as ov
import pytest
from conftest import quantized_psnr

from edgesr.export.quantize_common import QuantizeError
from edgesr.export.quantize_openvino import HINT_KEY, quantize_openvino


def _fake_quantized(path) -> set[str]:
    return {op.get_friendly_name() for op in ov.Core().read_model(str(path)).get_ordered_ops()
            if op.get_type_name() == "FakeQuantize"}


def _int8_weights(path) -> int:
    return sum(op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8
               for op in ov.Core().read_model(str(path)).get_ordered_ops())


def test_nncf_int8_close_to_fp32_and_keep(tmp_path, quantize_setup):
    _, fp32, calib, _ = quantize_setup
    report = quantize_openvino(fp32, tmp_path / "int8.xml", calib)
    assert report.path.is_file() and report.path.with_suffix(".bin").is_file()
    assert report.inference_precision == "f32" and _fake_quantized(report.path)
    assert 35.0 < quantized_psnr(quantize_setup, report.path) < 99.0
    first = next(n.name for n in onnx.load(fp32).graph.node if n.op_type == "Conv")
    kept = quantize_openvino(fp32, tmp_path / "keep.xml", calib, keep=[first], bf16_rest=True)
    assert _int8_weights(kept.path) == _int8_weights(report.path) - 1
    model = ov.Core().read_model(str(kept.path))
    assert model.get_rt_info(HINT_KEY).astype(str) == "bf16"


def test_nncf_keep_presets(tmp_path, quantize_setup):
    _, fp32, calib, _ = quantize_setup
    convs = [n.name for n in onnx.load(fp32).graph.node if n.op_type == "Conv"]
    plain = quantize_openvino(fp32, tmp_path / "int8.xml", calib)
    safe = quantize_openvino(fp32, tmp_path / "safe.xml", calib, keep=["first", "tail"])
    assert convs[0] in safe.kept and convs[-1] in safe.kept
    assert _int8_weights(safe.path) == _int8_weights(plain.path) - 2
    assert 35.0 < quantized_psnr(quantize_setup, safe.path) < 99.0
    with pytest.raises(QuantizeError, match="no node named"):
        quantize_openvino(fp32, tmp_path / "x.xml", calib, keep=["nope"])


def test_nncf_conv_only(tmp_path, quantize_setup):
    _, fp32, calib, _ = quantize_setup
    plain = quantize_openvino(fp32, tmp_path / "int8.xml", calib)
    conv = quantize_openvino(fp32, tmp_path / "conv.xml", calib, conv_only=True)
    model = ov.Core().read_model(str(conv.path))
    readers = {t.get_node().get_type_name() for op in model.get_ordered_ops()
               if op.get_type_name() == "FakeQuantize"
               for t in op.output(0).get_target_inputs()}
    assert readers == {"Convolution"}
    assert len(_fake_quantized(conv.path)) < len(_fake_quantized(plain.path))
    assert 35.0 < quantized_psnr(quantize_setup, conv.path) < 99.0


def test_bf16_artifact(tmp_path, quantize_setup):
    _, fp32, _, _ = quantize_setup
    report = quantize_openvino(fp32, tmp_path / "bf16.xml", precision="bf16")
    assert report.inference_precision == "bf16" and not _fake_quantized(report.path)
    assert quantized_psnr(quantize_setup, report.path) > 40.0  # exact where the CPU lacks BF16
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_openvino_errors(tmp_path, quantize_setup):
    _, fp32, _, _ = quantize_setup
    with pytest.raises(QuantizeError, match="needs a calibration set"):
        quantize_openvino(fp32, tmp_path / "x.xml")
    with pytest.raises(QuantizeError, match="unknown OpenVINO precision"):
        quantize_openvino(fp32, tmp_path / "x.xml", precision="int4")
