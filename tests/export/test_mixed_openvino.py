"""Per-layer mixed precision on OpenVINO: the sensitivity search finds the one layer INT8
ruins, keeps it out, and the IR reaches its target and runs reporting "mixed"."""

import numpy as np
import pytest
import torch
from conftest import tiny_descriptor

pytest.importorskip("nncf", reason="nncf is not installed (pip install nncf)")

from edgesr import cpu  # noqa: E402
from edgesr.calibration import build_calibration_set, evaluation_images  # noqa: E402
from edgesr.export.mixed_openvino import SearchBudget, mixed_search  # noqa: E402
from edgesr.export.onnx_export import export_onnx  # noqa: E402
from edgesr.export.quantize_common import QuantizeError  # noqa: E402
from edgesr.fidelity import psnr  # noqa: E402
from edgesr.runtimes import create_runtime  # noqa: E402

TARGET = 40.0


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory):
    """(descriptor, ONNX path) of tiny compact x4 with one sensitive layer: channel 0 of the
    second conv is scaled up 10^4 and the third conv reads it scaled down as much (PReLU is
    positively homogeneous, so FP32 computes the same function), so the third conv's input has
    a huge dynamic range and a per-tensor INT8 quantizer there zeroes every other channel.
    The last conv is scaled up so the network, not the skip, makes the output."""
    desc = tiny_descriptor("compact_x4")
    body = desc.model.body
    with torch.no_grad():
        body[2].weight[0] *= 1e4
        body[2].bias[0] *= 1e4
        body[4].weight[:, 0] /= 1e4
        body[-1].weight *= 10
        body[-1].bias *= 10
    path = tmp_path_factory.mktemp("mixed") / "sensitive.onnx"
    return desc, export_onnx(desc, path, check=False).path


@pytest.fixture(scope="module")
def data():
    return build_calibration_set(count=4, tile=32, seed=0), evaluation_images(count=2, size=32)


@pytest.mark.parametrize("rest", ["fp32", "auto"])
def test_search_keeps_the_sensitive_layer_out_and_reaches_the_target(sensitive, data, rest,
                                                                     tmp_path):
    desc, onnx_path = sensitive
    calib, images = data
    report = mixed_search(onnx_path, tmp_path / "m.xml", calib, images, target_psnr=TARGET,
                          rest=rest)
    all_int8 = report.trials[0][1]
    assert report.trials[0][0] == 0 and all_int8 < TARGET - 5  # INT8 everywhere misses it
    assert report.kept == ["/body.4/Conv/WithoutBiases"] and report.layers == 6
    assert report.psnr >= TARGET
    assert report.rest == ("bf16" if rest == "auto" and cpu.detect().bf16 else "fp32")
    # Held-out check of the written IR through the runtime, against PyTorch FP32.
    x = np.stack([img.transpose(2, 0, 1) for img in
                  evaluation_images(count=2, size=32, seed=77)]).astype(np.float32)
    with create_runtime("openvino", report.path) as rt:
        assert rt.info.precision == "mixed" and rt.info.scale == 4
        out = rt.infer(x)
    with torch.no_grad():
        ref = desc.model(torch.from_numpy(x)).numpy()
    assert psnr(out.clip(0, 1), ref.clip(0, 1)) >= TARGET


def test_a_spent_budget_keeps_the_best_layout_found(sensitive, data, tmp_path):
    """Three layouts allowed: all INT8, then blocks 0 and 1 out (neither is the sensitive
    layer); no passing layout was found, so every layer goes out of INT8 and the IR reaches
    the target as the float model, saying the budget was spent. The NNCF calibration takes the
    first ``calib_count`` crops only."""
    calib, images = data
    logged = []
    report = mixed_search(sensitive[1], tmp_path / "m.xml", calib, images, target_psnr=TARGET,
                          rest="fp32", budget=SearchBudget(calib_count=2, trials=3),
                          log=logged.append)
    assert report.budget_spent and [n for n, _ in report.trials] == [0, 1, 1, 6]
    assert len(report.kept) == report.layers == 6 and report.psnr >= TARGET
    assert any("budget spent after 4 layout(s)" in line for line in logged)
    with create_runtime("openvino", report.path) as rt:
        assert rt.info.precision == "mixed"
    unbounded = mixed_search(sensitive[1], tmp_path / "u.xml", calib, images,
                             target_psnr=TARGET, rest="fp32")
    assert not unbounded.budget_spent and len(unbounded.trials) <= SearchBudget().trials


def test_an_unreachable_target_is_an_error(sensitive, data, tmp_path):
    _, onnx_path = sensitive
    with pytest.raises(QuantizeError, match="cannot reach 200 dB"):
        mixed_search(onnx_path, tmp_path / "m.xml", *data, target_psnr=200.0, rest="fp32")
    assert not (tmp_path / "m.xml").exists()


def test_quantize_command_builds_the_mixed_ir(sensitive, tmp_path, capsys):
    from edgesr.cli import main

    _, onnx_path = sensitive
    out = tmp_path / "mixed.xml"
    assert main(["quantize", str(onnx_path), "-o", str(out), "--precision", "int8",
                 "--backend", "openvino", "--target-psnr", str(TARGET), "--min-psnr",
                 str(TARGET - 3), "--tile", "32", "--eval-count", "2"]) == 0
    printed = capsys.readouterr().out
    assert "OpenVINO mixed: 5 of 6 convolution(s) INT8" in printed
    assert out.is_file() and out.with_suffix(".bin").is_file()


def test_every_layer_out_of_int8_is_the_float_model(sensitive, data):
    """NNCF stores INT8 weights (int8 constant x scale) and corrects biases: taking a layer out
    of INT8 restores its float weights and bias, so all layers out gives the FP32 output."""
    import openvino as ov

    from edgesr.export.mixed_openvino import _fake_quantizers, without_int8
    from edgesr.export.quantize_openvino import _nncf_int8, _read

    _, onnx_path = sensitive
    fp32 = _read(onnx_path)
    int8 = _nncf_int8(fp32, data[0], (), conv_only=True)
    layers = {op.get_friendly_name() for op in int8.get_ordered_ops()
              if op.get_type_name() == "Convolution" and _fake_quantizers(op)}
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)

    def run(model):
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return compiled({0: x})[0]

    restored, quantized, ref = run(without_int8(int8, layers, fp32)), run(int8), run(fp32)
    assert np.abs(restored - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert np.abs(quantized - ref).max() > 1e-3  # the INT8 model itself differs
