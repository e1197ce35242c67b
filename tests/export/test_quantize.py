"""export.quantize: the library function under ``edgesr quantize`` (gate, artifacts, log)."""

import pytest
import torch
from tiny_models import make_tiny

from edgesr.errors import EdgesrError
from edgesr.export.quality import QualityGateError
from edgesr.export.quantize import QuantizeOptions, quantize


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "compact.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, path)
    return path


def test_fp16_artifact_report_and_log(tmp_path, checkpoint):
    lines = []
    options = QuantizeOptions(precision="fp16", tile=16, eval_count=1, min_psnr=30)
    result = quantize(str(checkpoint), tmp_path / "m.onnx", options, log=lines.append)
    assert result.output == tmp_path / "m.onnx" and result.output.is_file()
    assert result.report_path == tmp_path / "m.onnx.quality.json"
    assert result.report.psnr > 30 and result.report.precision == "fp16"
    assert lines == [result.report.summary(), f"quality report -> {result.report_path}"]
    assert result.notes[0].startswith("FP16; kept in FP32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.quality.json"]


def test_gate_refuses_and_leaves_only_the_report(tmp_path, checkpoint):
    options = QuantizeOptions(precision="fp16", tile=16, eval_count=1, min_psnr=200)
    with pytest.raises(QualityGateError, match="below --min-psnr 200"):
        quantize(str(checkpoint), tmp_path / "m.onnx", options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx.quality.json"]


@pytest.mark.parametrize("options,message", [
    (QuantizeOptions(precision="int4"), "unknown precision 'int4'"),
    (QuantizeOptions(precision="fp16", backend="openvino"), "fp16 is built for onnxruntime"),
    (QuantizeOptions(precision="fp16", preset="all-ops"), "--preset is an INT8 layout"),
    (QuantizeOptions(precision="bf16", backend="onnxruntime"), "bf16 is built for openvino")])
def test_bad_options_fail_before_any_work(tmp_path, checkpoint, options, message):
    with pytest.raises(EdgesrError, match=message):
        quantize(str(checkpoint), tmp_path / "out" / "m.onnx", options)
    assert not (tmp_path / "out").exists()
