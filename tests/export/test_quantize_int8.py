"""INT8 QDQ for ONNX Runtime: methods near FP32, exclusions, presets, weight types, the sweep."""

import onnx
import pytest
from conftest import make_quantize_setup, quantized_psnr

from edgesr.export.quality import torch_runner
from edgesr.export.quantize_common import QuantizeError
from edgesr.export.quantize_int8 import (
    INT8_PRESETS,
    quantize_int8,
    quantized_nodes,
    sensitivity_sweep,
)


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


@pytest.fixture(scope="module")
def rrdb(tmp_path_factory):
    """``quantize_setup`` for tiny RRDB x4 (residual sums, concats, nearest upsampling)."""
    return make_quantize_setup("rrdb_x4", tmp_path_factory.mktemp("r"))


def _dq_readers(path) -> dict[str, str]:
    """Node name -> op type of each node that reads a dequantized copy of a tensor not made by
    a Conv (a Conv's own output keeps its pair: ONNX Runtime fuses DQ-Conv-Q)."""
    nodes = list(onnx.load(str(path)).graph.node)
    made_by = {o: n.op_type for n in nodes for o in n.output}
    q_in = {n.output[0]: n.input[0] for n in nodes if n.op_type == "QuantizeLinear"}
    dq_out = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear"
              and made_by.get(q_in.get(n.input[0])) != "Conv" and n.input[0] in q_in}
    return {n.name: n.op_type for n in nodes if dq_out & set(n.input)}


def test_sr_safe_preset_quantizes_convs_only(tmp_path, rrdb):
    _, fp32, calib, _ = rrdb
    every = quantize_int8(fp32, tmp_path / "all.onnx", calib, **INT8_PRESETS["all-ops"])
    safe = quantize_int8(fp32, tmp_path / "safe.onnx", calib, **INT8_PRESETS["sr-safe"])
    assert {"Add", "Concat", "Conv"} <= set(_dq_readers(every.path).values())
    readers = _dq_readers(safe.path)
    convs = [n.name for n in onnx.load(fp32).graph.node if n.op_type == "Conv"]
    assert set(readers.values()) == {"Conv"}  # residual sums, concats, upsampling stay float
    quantized = quantized_nodes(safe.path, set(convs))
    assert safe.op_types == ["Conv"] and convs[0] in safe.excluded
    assert quantized == [c for c in convs if c not in safe.excluded]
    assert len(quantized) == len(convs) - 5  # first conv; conv_up1, conv_up2, conv_hr, last
    onnx.checker.check_model(onnx.load(str(safe.path)))
    psnr = [quantized_psnr(rrdb, r.path) for r in (every, safe)]
    assert 40.0 < psnr[1] < 99.0 and psnr[1] > psnr[0]


@pytest.mark.parametrize(("weights", "dtype", "bound"), [("int7", onnx.TensorProto.INT8, 64),
                                                          ("uint8", onnx.TensorProto.UINT8, 256)])
def test_weight_types(tmp_path, quantize_setup, weights, dtype, bound):
    _, fp32, calib, _ = quantize_setup
    report = quantize_int8(fp32, tmp_path / "q.onnx", calib, weights=weights)
    model = onnx.load(str(report.path))
    w = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer
         if i.data_type == dtype and i.dims and len(i.dims) == 4]
    assert w and all(abs(a.astype(int)).max() <= bound for a in w)
    assert quantized_psnr(quantize_setup, report.path) > 30.0
    with pytest.raises(QuantizeError, match="unknown weight type"):
        quantize_int8(fp32, tmp_path / "x.onnx", calib, weights="int4")
