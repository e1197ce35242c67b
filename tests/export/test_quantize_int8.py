"""INT8 QDQ for ONNX Runtime: each method close to FP32, exclusions, and the sensitivity sweep."""

import onnx
import pytest
from conftest import quantized_psnr

from edgesr.export.quality import torch_runner
from edgesr.export.quantize_common import QuantizeError
from edgesr.export.quantize_int8 import quantize_int8, sensitivity_sweep


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_methods_valid_and_close(tmp_path, quantize_setup, method):
    _, fp32, calib, _ = quantize_setup
    report = quantize_int8(fp32, tmp_path / "q.onnx", calib, method=method)
    model = onnx.load(report.path)
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert 35.0 < quantized_psnr(quantize_setup, report.path) < 99.0  # quantized, near FP32


def test_int8_exclusions(tmp_path, quantize_setup):
    _, fp32, calib, _ = quantize_setup
    report = quantize_int8(fp32, tmp_path / "q.onnx", calib, exclude=["first", "tail"])
    model = onnx.load(report.path)
    convs = [n.name for n in onnx.load(fp32).graph.node if n.op_type == "Conv"]
    assert convs[0] in report.excluded and convs[-1] in report.excluded
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    last = next(n for n in model.graph.node if n.name == convs[-1])
    assert not dq_out & set(last.input)  # runs on float inputs and weights
    with pytest.raises(QuantizeError, match="no node named"):
        quantize_int8(fp32, tmp_path / "x.onnx", calib, exclude=["nope"])
    with pytest.raises(QuantizeError, match="unknown calibration method"):
        quantize_int8(fp32, tmp_path / "x.onnx", calib, method="magic")


def test_sweep_meets_a_target_plain_int8_misses(tmp_path, quantize_setup):
    descriptor, fp32, calib, images = quantize_setup
    base = quantized_psnr(quantize_setup, quantize_int8(fp32, tmp_path / "base.onnx", calib).path)
    target = base + 3.0
    result = sensitivity_sweep(fp32, tmp_path / "swept.onnx", calib, images, target_psnr=target,
                               reference=torch_runner(descriptor), blocks=4)
    assert result.psnr >= target and result.report.excluded
    swept = quantized_psnr(quantize_setup, result.report.path)
    assert swept == pytest.approx(result.psnr, abs=1e-6)
    ops = [n.op_type for n in onnx.load(result.report.path).graph.node]
    assert "DequantizeLinear" in ops  # still an INT8 model
    with pytest.raises(QuantizeError, match="cannot reach"):
        sensitivity_sweep(fp32, tmp_path / "x.onnx", calib, images, target_psnr=200.0, blocks=2)
