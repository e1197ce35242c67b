"""FP16 conversion: I/O stays FP32, quality close to FP32, and the overflow guard proven."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from tiny_models import make_tiny

from edgesr.calibration import build_calibration_set, evaluation_images
from edgesr.export.onnx_export import export_onnx
from edgesr.export.quality import onnx_runner, quality_report, torch_runner
from edgesr.export.quantize_common import QuantizeError
from edgesr.export.quantize_fp16 import convert_fp16
from edgesr.models import model_from_state_dict


@pytest.fixture(scope="module")
def calib():
    return build_calibration_set(count=3, tile=16, seed=0)


@pytest.fixture(scope="module")
def overflow_model(tmp_path_factory):
    """Conv whose activations reach ~3e5 (Inf in FP16), then a x1e-4 scale back into range."""
    rng = np.random.default_rng(0)
    w1 = np.abs(rng.normal(0, 1, (8, 3, 3, 3))).astype(np.float32) * 15000
    w2 = rng.normal(0, 0.3, (3, 8, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["a"], pads=[1, 1, 1, 1], name="big_conv"),
        helper.make_node("Mul", ["a", "s"], ["b"], name="scale_down"),
        helper.make_node("Relu", ["b"], ["c"], name="relu"),
        helper.make_node("Conv", ["c", "w2"], ["output"], pads=[1, 1, 1, 1], name="out_conv"),
    ]
    graph = helper.make_graph(
        nodes, "overflow", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                          ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(np.array(1e-4, np.float32), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path_factory.mktemp("ovf") / "overflow.onnx"
    onnx.save(model, path)
    return path


def _reference_fp16_run(path, x):
    """ONNX's NumPy reference evaluator computes FP16 ops in FP16, as a GPU would."""
    return ReferenceEvaluator(str(path)).run(None, {"input": x})[0]


def test_overflow_guard_keeps_offending_ops_fp32(tmp_path, overflow_model, calib):
    x = calib[1]
    fp32 = _reference_fp16_run(overflow_model, x)
    plain = convert_fp16(overflow_model, tmp_path / "plain.onnx")
    assert plain.kept_fp32 == []
    with np.errstate(all="ignore"):
        assert not np.isfinite(_reference_fp16_run(plain.path, x)).all()  # NaN/Inf: the bug

    guarded = convert_fp16(overflow_model, tmp_path / "guarded.onnx", calib)
    assert guarded.kept_fp32 == ["big_conv", "scale_down"] and guarded.overflowing["a"] > 65504
    out = _reference_fp16_run(guarded.path, x)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out - fp32).max() < 1e-3 * np.abs(fp32).max()


def test_fp16_check_round_catches_what_the_margin_missed(tmp_path, overflow_model, calib):
    report = convert_fp16(overflow_model, tmp_path / "m.onnx", calib, safety=10.0)
    assert report.overflowing == {} and report.rounds >= 1
    assert report.kept_fp32 == ["big_conv", "scale_down"]


def test_fp16_tiny_model_close_to_fp32(tmp_path, calib):
    descriptor = model_from_state_dict(make_tiny("compact_x4").state_dict())
    fp32 = export_onnx(descriptor, tmp_path / "m.onnx", check=False).path
    report = convert_fp16(fp32, tmp_path / "m16.onnx", calib)
    model = onnx.load(report.path)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)
    q = quality_report(torch_runner(descriptor), onnx_runner(report.path),
                       evaluation_images(count=2, size=16), artifact="m16.onnx", precision="fp16")
    assert q.psnr > 55.0, q.summary()


def test_unknown_keep_fp32_node(tmp_path, overflow_model):
    with pytest.raises(QuantizeError, match="no node"):
        convert_fp16(overflow_model, tmp_path / "x.onnx", keep_fp32=["nope"])


def test_runtime_reports_fp16_for_guarded_graphs(tmp_path, overflow_model, calib):
    """The guarded FP16 graph keeps FP32 I/O and some nodes in FP32: ONNX Runtime still says it
    runs fp16 (it used to say fp32 for any graph whose input is float)."""
    from edgesr.runtimes.onnxruntime_runtime import OnnxRuntime

    guarded = convert_fp16(overflow_model, tmp_path / "guarded.onnx", calib)
    assert guarded.kept_fp32  # a mixed graph: FP32 nodes beside FP16 ones
    descriptor = model_from_state_dict(make_tiny("compact_x4").state_dict())
    fp32 = export_onnx(descriptor, tmp_path / "m.onnx", check=False).path
    whole = convert_fp16(fp32, tmp_path / "m16.onnx", calib).path
    ran = {}
    for name, path in {"fp32": fp32, "guarded": guarded.path, "whole": whole}.items():
        with OnnxRuntime(path) as runtime:
            ran[name] = runtime.info.precision
    assert ran == {"fp32": "fp32", "guarded": "fp16", "whole": "fp16"}
