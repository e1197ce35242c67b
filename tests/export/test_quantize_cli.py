"""``edgesr calibrate`` and ``edgesr quantize``: artifact, report, and the --min-psnr refusal."""

import json

import pytest
import torch
from tiny_models import make_tiny

from edgesr.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ckpt = root / "compact.pth"
    torch.save({"params_ema": make_tiny("compact_x4").state_dict()}, ckpt)
    calib = root / "calib.npz"
    assert main(["calibrate", "-o", str(calib), "--count", "3", "--tile", "16"]) == 0
    return ckpt, calib


def _quantize(ckpt, calib, out, *extra):
    return main(["quantize", str(ckpt), "-o", str(out), "--calib", str(calib), "--tile", "16",
                 "--eval-count", "1", *extra])


def test_quantize_int8_writes_artifact_and_report(tmp_path, files, capsys):
    ckpt, calib = files
    out = tmp_path / "m_int8.onnx"
    assert _quantize(ckpt, calib, out, "--precision", "int8", "--min-psnr", "30") == 0
    report = json.loads((tmp_path / "m_int8.onnx.quality.json").read_text())
    assert out.is_file() and report["psnr"] > 30 and report["reference"] == "FP32 PyTorch"
    assert "PSNR" in capsys.readouterr().out


def test_min_psnr_refuses_to_ship(tmp_path, files, capsys):
    ckpt, calib = files
    out = tmp_path / "bad.onnx"
    assert _quantize(ckpt, calib, out, "--precision", "int8", "--min-psnr", "99") == 1
    assert "below --min-psnr 99" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "bad.onnx.quality.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx.quality.json"]


def test_bf16_on_onnxruntime_is_one_clear_error(tmp_path, files, capsys):
    ckpt, calib = files
    code = _quantize(ckpt, calib, tmp_path / "m.onnx", "--precision", "bf16",
                     "--backend", "onnxruntime")
    assert code == 1 and "bf16 is built for openvino" in capsys.readouterr().err


def test_preset_outside_int8_is_one_clear_error(tmp_path, files, capsys):
    ckpt, calib = files
    code = _quantize(ckpt, calib, tmp_path / "m.onnx", "--precision", "fp16", "--preset", "all-ops")
    assert code == 1 and "--preset is an INT8 layout" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_diffusion_preset_on_an_image_upscaler_is_one_clear_error(tmp_path, files, capsys):
    ckpt, calib = files
    code = _quantize(ckpt, calib, tmp_path / "m.onnx", "--precision", "int8", "--preset",
                     "diffusion")
    err = capsys.readouterr().err
    assert code == 1 and "--preset diffusion is a diffusion graph layout" in err
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_presets_choose_what_is_quantized(tmp_path, files):
    import onnx

    ckpt, calib = files
    counts = {}
    for preset in ("sr-safe", "all-ops"):
        out = tmp_path / f"{preset}.onnx"
        assert _quantize(ckpt, calib, out, "--precision", "int8", "--preset", preset,
                         "--weights", "int7") == 0
        ops = [node.op_type for node in onnx.load(str(out)).graph.node]
        counts[preset] = ops.count("QuantizeLinear")
    assert 0 < counts["sr-safe"] < counts["all-ops"]


def test_other_multi_input_graph_is_refused_with_one_line(tmp_path, files, capsys):
    import onnx
    from onnx import TensorProto, helper

    _, calib = files
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    bias = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"])], "two", [image, bias],
                              [out])
    onnx.save(helper.make_model(graph), tmp_path / "two.onnx")
    assert _quantize(tmp_path / "two.onnx", calib, tmp_path / "q.onnx", "--precision",
                     "fp16") == 1
    err = capsys.readouterr().err
    assert "not other multi-input graphs; this graph has inputs ['x', 'b']" in err
    assert err.count("\n") == 1 and not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("location", ["../../outside.bin", "/etc/hostname", "sub/../../x.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, exported, capsys,
                                                           location):
    import onnx

    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save_model(onnx.load(str(exported("compact_x2")[1])), str(folder / "m.onnx"),
                    save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(proto, str(folder / "m.onnx"))
    code = main(["quantize", str(folder / "m.onnx"), "--precision", "fp16", "-o",
                 str(tmp_path / "q.onnx"), "--eval-count", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("edgesr: error:") and len(err.splitlines()) == 1
    assert "outside the model's folder" in err and not (tmp_path / "q.onnx").exists()


def test_invalid_graph_is_one_clear_error(tmp_path, exported, capsys):
    import onnx

    model = onnx.load(str(exported("compact_x2")[1]))
    model.graph.node[3].op_type = "NoSuchOp"
    onnx.save(model, str(tmp_path / "bad.onnx"))
    code = main(["quantize", str(tmp_path / "bad.onnx"), "--precision", "fp16", "-o",
                 str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("edgesr: error:") and "NoSuchOp" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "q.onnx").exists()
