"""INT8 QDQ for ONNX Runtime: each method close to FP32, exclusions, and the sensitivity sweep."""

import onnx
import pytest
from tiny_models import make_tiny

from edgesr.calibration import build_calibration_set, evaluation_images
from edgesr.export.onnx_export import export_onnx
from edgesr.export.quality import onnx_runner, quality_report, torch_runner
from edgesr.export.quantize_common import QuantizeError
from edgesr.export.quantize_int8 import quantize_int8, sensitivity_sweep
from edgesr.models import model_from_state_dict


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    descriptor = model_from_state_dict(make_tiny("compact_x4").state_dict())
    path = export_onnx(descriptor, tmp_path_factory.mktemp("m") / "m.onnx", check=False).path
    return (descriptor, path, build_calibration_set(count=3, tile=16, seed=0),
            evaluation_images(count=2, size=16))


def _psnr(setup, path) -> float:
    descriptor, _, _, images = setup
    return quality_report(torch_runner(descriptor), onnx_runner(path), images,
                          artifact=str(path), precision="int8").psnr


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_methods_valid_and_close(tmp_path, setup, method):
    _, fp32, calib, _ = setup
    report = quantize_int8(fp32, tmp_path / "q.onnx", calib, method=method)
    model = onnx.load(report.path)
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert 35.0 < _psnr(setup, report.path) < 99.0  # quantized, yet close to FP32


def test_int8_exclusions(tmp_path, setup):
    _, fp32, calib, _ = setup
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


def test_sweep_meets_a_target_plain_int8_misses(tmp_path, setup):
    descriptor, fp32, calib, images = setup
    base = _psnr(setup, quantize_int8(fp32, tmp_path / "base.onnx", calib).path)
    target = base + 3.0
    result = sensitivity_sweep(fp32, tmp_path / "swept.onnx", calib, images, target_psnr=target,
                               reference=torch_runner(descriptor), blocks=4)
    assert result.psnr >= target and result.report.excluded
    assert _psnr(setup, result.report.path) == pytest.approx(result.psnr, abs=1e-6)
    ops = [n.op_type for n in onnx.load(result.report.path).graph.node]
    assert "DequantizeLinear" in ops  # still an INT8 model
    with pytest.raises(QuantizeError, match="cannot reach"):
        sensitivity_sweep(fp32, tmp_path / "x.onnx", calib, images, target_psnr=200.0, blocks=2)
