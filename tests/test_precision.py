"""Choosing the precision that runs: --precision on upscale and the API, auto's fidelity gate,
fallbacks on CPUs without native BF16/FP16 (simulated), and the line that says what ran."""

import numpy as np
import pytest
from conftest import smooth_image, tiny_descriptor
from PIL import Image

pytest.importorskip("openvino", reason="openvino is not installed (pip install edgesr[openvino])")

import edgesr  # noqa: E402
from edgesr import cpu, precision  # noqa: E402
from edgesr.cli import main  # noqa: E402
from edgesr.errors import EdgesrError  # noqa: E402
from edgesr.export.onnx_export import export_onnx  # noqa: E402
from edgesr.pipeline import open_runtime  # noqa: E402
from edgesr.runtimes.openvino_runtime import build_ir  # noqa: E402

#: A CPU with AVX-512 and VNNI but no BF16/FP16 (like the AVX2/AVX-512 machines edgesr met).
NO_BF16 = cpu.CpuInfo(model="simulated AVX-512 CPU", flags=frozenset({"avx2", "avx512f",
                                                                      "avx512_vnni"}), cores=2)
WITH_BF16 = cpu.CpuInfo(model="simulated AMX CPU", flags=frozenset({"avx2", "avx512f",
                                                                    "avx512_bf16", "amx_bf16"}))
needs_bf16 = pytest.mark.skipif(not cpu.detect().bf16, reason="this CPU has no native BF16")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("prec") / "compact_x4.onnx"
    return export_onnx(tiny_descriptor("compact_x4"), path, check=False).path


@needs_bf16
def test_bf16_runs_bf16_on_a_cpu_that_has_it(onnx_model):
    with open_runtime(str(onnx_model), "openvino", precision="bf16") as rt:
        rt.infer(np.zeros((1, 3, 16, 16), np.float32))
        assert rt.info.precision == "bf16"
        assert rt.describe().startswith("openvino on CPU at bf16")


def test_bf16_falls_back_to_fp32_on_a_cpu_without_it(onnx_model):
    with cpu.simulate(NO_BF16), open_runtime(str(onnx_model), "openvino",
                                             precision="bf16") as rt:
        rt.infer(np.zeros((1, 3, 16, 16), np.float32))
        assert rt.info.precision == "fp32"
        assert "no native BF16: fell back to fp32" in rt.describe()


def test_fp16_ir_runs_as_built_and_says_so(onnx_model, tmp_path):
    xml = build_ir(onnx_model, tmp_path / "m.xml", precision="fp16")
    expected = "fp16" if cpu.detect().fp16 else "fp32"
    with open_runtime(str(xml), "openvino") as rt:
        assert rt.info.precision == expected
        assert "weights are fp16" in rt.describe()
    with cpu.simulate(NO_BF16), open_runtime(str(xml), "openvino") as rt:
        assert rt.info.precision == "fp32" and "fell back to fp32" in rt.describe()
    with open_runtime(str(xml), "openvino", precision="fp32") as rt:  # asked: no note
        assert rt.info.precision == "fp32" and rt.info.precision_note == ""


def test_auto_is_fp32_without_native_reduced_precision(onnx_model, monkeypatch):
    monkeypatch.setattr(precision, "measure_psnr", _never)
    with cpu.simulate(NO_BF16):
        choice = precision.choose("openvino", onnx_model, "auto", {})
    assert choice.precision == "fp32" and choice.options == {"precision": "fp32"}


@needs_bf16
def test_auto_takes_bf16_only_within_the_gate_and_caches_the_check(onnx_model, monkeypatch):
    with cpu.simulate(WITH_BF16):
        choice = precision.choose("openvino", onnx_model, "auto", {})
        assert choice.precision == "bf16", choice.reason
        score = float(choice.reason.split(" keeps ")[1].split(" dB")[0])
        assert score >= precision.GATE_DB
        monkeypatch.setattr(precision, "measure_psnr", _never)  # cached from now on
        strict = precision.choose("openvino", onnx_model, "auto", {}, gate_db=score + 1)
    assert strict.precision == "fp32" and "< " in strict.reason


def test_auto_reads_the_gate_per_cpu(onnx_model, monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "measure_psnr", lambda *a: calls.append(a) or 10.0)
    for model in ("one", "two"):
        with cpu.simulate(cpu.CpuInfo(model=model, flags=frozenset({"avx512_bf16"}))):
            choice = precision.choose("openvino", onnx_model, "auto", {})
            assert choice.precision == "fp32" and "10.0 dB < 40 dB" in choice.reason
    assert len(calls) == 2


def test_unknown_and_unsupported_precisions_are_refused(onnx_model):
    with pytest.raises(EdgesrError, match="precision must be one of"):
        precision.choose("openvino", onnx_model, "fp8", {})
    with pytest.raises(EdgesrError, match="no precision option 'bf16'"):
        open_runtime(str(onnx_model), "onnxruntime", precision="bf16")
    with pytest.raises(EdgesrError, match="disagree"):
        open_runtime(str(onnx_model), "openvino:fp16", precision="bf16")


def test_int8_is_the_model_files_and_checked(onnx_model, tmp_path):
    from edgesr.calibration import build_calibration_set
    from edgesr.export.quantize_int8 import quantize_int8

    int8 = quantize_int8(onnx_model, tmp_path / "int8.onnx",
                         build_calibration_set(count=2, tile=16, seed=0)).path
    with open_runtime(str(int8), "onnxruntime", precision="int8") as rt:
        assert rt.info.precision == "int8"
    for backend in ("onnxruntime", "openvino"):
        runtime = open_runtime(str(onnx_model), backend, precision="int8")
        with pytest.raises(EdgesrError, match="runs at fp32; int8 on .* needs a model file"):
            runtime.activate()
        assert not runtime.is_active


def test_api_session_reports_precision_and_device(onnx_model):
    with cpu.simulate(NO_BF16), edgesr.load(onnx_model, backend="openvino", precision="bf16",
                                            device="CPU", tile=16, overlap=4) as sr:
        assert (sr.precision, sr.device) == ("fp32", "CPU")
        assert "fell back to fp32" in sr.describe()
    with edgesr.load(onnx_model, backend="onnxruntime", device="cpu") as sr:
        assert sr.precision == "fp32" and sr.describe() == "onnxruntime on cpu at fp32"


def test_cli_prints_what_ran(onnx_model, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray((smooth_image(np.random.default_rng(0), 20, 24) * 255)
                    .astype(np.uint8)).save(src)
    with cpu.simulate(NO_BF16):
        assert main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", str(onnx_model),
                     "-b", "openvino", "--precision", "bf16", "--device", "CPU",
                     "--tile", "16", "--overlap", "4"]) == 0
    err = capsys.readouterr().err
    assert "edgesr: openvino on CPU at fp32 (bf16 asked; this CPU has no native BF16" in err
    assert main(["upscale", str(src), "-o", str(tmp_path / "q.png"), "-m", str(onnx_model),
                 "-b", "openvino", "--precision", "fp32", "-q"]) == 0
    assert "at fp32" not in capsys.readouterr().err


def test_device_option_is_the_backends(onnx_model):
    with pytest.raises(EdgesrError, match="device 'NOSUCH' not found"):
        open_runtime(str(onnx_model), "openvino", device="NOSUCH").activate()


#: What the README states each OpenVINO precision path keeps against PyTorch FP32:
#: fp32 exact (max abs diff <= 1e-4), fp16 >= 60 dB, bf16 >= 40 dB (auto's gate).
STATED = {"fp32": None, "fp16": 60.0, "bf16": 40.0}


@pytest.mark.parametrize("path", sorted(STATED))
@pytest.mark.parametrize("family", ["rrdb_x2", "compact_x4"])
def test_each_precision_path_keeps_its_stated_psnr(tmp_path, family, path):
    import torch

    from edgesr.calibration import evaluation_images
    from edgesr.fidelity import psnr

    desc = tiny_descriptor(family)
    onnx_path = export_onnx(desc, tmp_path / "m.onnx", check=False).path
    x = np.stack([i.transpose(2, 0, 1) for i in evaluation_images(count=2, size=32)])
    with open_runtime(str(onnx_path), "openvino", precision=path) as rt:
        out = rt.infer(x.astype(np.float32))
        ran = rt.info.precision
    with torch.no_grad():
        ref = desc.model(torch.from_numpy(x.astype(np.float32))).numpy()
    native = {"fp32": True, "fp16": cpu.detect().fp16, "bf16": cpu.detect().bf16}[path]
    assert ran == (path if native else "fp32")
    if STATED[path] is None:
        assert np.abs(out - ref).max() <= 1e-4
    else:
        assert psnr(out.clip(0, 1), ref.clip(0, 1)) >= STATED[path]


def _never(*args):
    raise AssertionError("the gate was measured again instead of read from its cache")
