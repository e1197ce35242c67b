"""The samplers on OpenVINO (sd-upscaler-openvino, sr3-openvino) against the ONNX Runtime FP32
samplers with the same seed, through ``edgesr upscale -b BACKEND:PRECISION`` on the tiny SD x4
and SR3 models, and the precision the CPU really ran."""

from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image
from tiny_models import export_tiny_diffusion

from edgesr.cli import main
from edgesr.imageio import read_image
from edgesr.runtimes import create_runtime

pytest.importorskip("openvino", reason="openvino is not installed: pip install openvino")
diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed: "
                                "pip install 'edgesr[diffusion]'")

#: FP32: OpenVINO vs ONNX Runtime measured 1.5e-5 max abs diff (one 16-bit PNG step; SD x4 and
#: SR3) through the CLI; bound with margin.
FP32_ATOL = 1e-4
#: PSNR vs the ONNX Runtime FP32 sampler with the same seed, measured through the CLI (16-bit
#: PNG) on a CPU with AVX-512 FP16/BF16 and AMX: tiny SD x4 (3 DDIM steps, 16x12 in) fp16
#: 60.2 dB, bf16 38.6 dB; tiny SR3 (6 steps, x2) fp16 73.1 dB, bf16 54.9 dB. Bounds with margin.
MIN_PSNR = {("sd", "fp16"): 45.0, ("sd", "bf16"): 30.0,
            ("sr3", "fp16"): 55.0, ("sr3", "bf16"): 40.0}


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((row for row in text.splitlines() if row.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with the tiny SD x4 export (``sd/``), the tiny SR3 export (``sr3.onnx``), a
    small image, and its own engine cache."""
    root = export_tiny_diffusion(tmp_path_factory.mktemp("ov"))
    pixels = smooth_image(np.random.default_rng(3), 12, 16)
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(root / "in.png")
    return root


@pytest.fixture
def cache(workspace, monkeypatch):
    monkeypatch.setenv("EDGESR_CACHE", str(workspace / "cache"))


MODELS = {"sd": ("sd", "sd-upscaler", ["--steps", "3"]),
          "sr3": ("sr3.onnx", "sr3", ["--scale", "2"])}


def _upscale(workspace: Path, model: str, backend: str) -> np.ndarray:
    name, _, extra = MODELS[model]
    out = workspace / f"{model}-{backend.replace(':', '-')}.png"
    assert main(["upscale", str(workspace / "in.png"), "-m", str(workspace / name), "-b",
                 backend, "-o", str(out), "--tile", "0", "--bit-depth", "16", "-q",
                 *extra]) == 0
    return read_image(out).pixels


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_openvino_sampler_matches_onnxruntime_fp32(workspace, cache, model, precision):
    reference = _upscale(workspace, model, MODELS[model][1])
    out = _upscale(workspace, model, f"{MODELS[model][1]}-openvino:{precision}")
    assert out.shape == reference.shape
    if precision == "fp32":
        np.testing.assert_allclose(out, reference, rtol=0, atol=FP32_ATOL)
    else:
        assert _psnr(out, reference) >= MIN_PSNR[model, precision]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_reports_the_precision_the_cpu_ran(workspace, cache, precision):
    flags = _cpu_flags()
    native = {"fp32": True, "bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
              "fp16": bool({"avx512_fp16", "amx_fp16"} & flags)}
    with create_runtime("sd-upscaler-openvino", workspace / "sd", steps=1,
                        precision=precision) as runtime:
        ran = runtime.info.precision
    if native[precision]:
        assert ran == precision
    else:
        assert ran in (precision, "fp32")


def _native(precision: str) -> bool:
    flags = _cpu_flags()
    return {"fp32": True, "bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
            "fp16": bool({"avx512_fp16", "amx_fp16"} & flags)}[precision]


def _upscale_line(workspace: Path, model: str, backend: str, capsys) -> str:
    name, _, extra = MODELS[model]
    assert main(["upscale", str(workspace / "in.png"), "-m", str(workspace / name), "-b",
                 backend, "-o", str(workspace / "line.png"), "--tile", "0", *extra,
                 "--steps", "2"]) == 0
    return next(line for line in capsys.readouterr().err.splitlines()
                if line.startswith("edgesr: ") and "; model " in line)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_upscale_line_says_the_precision_that_ran(workspace, cache, capsys, model, precision):
    backend = f"{MODELS[model][1]}-openvino"
    line = _upscale_line(workspace, model, f"{backend}:{precision}", capsys)
    ran = precision if _native(precision) else "fp32"
    assert line.startswith(f"edgesr: {backend} on CPU at {ran}"), line
    assert "unreported" not in line


@pytest.mark.parametrize("model", MODELS)
def test_upscale_line_on_onnxruntime_says_the_graphs_precision(workspace, cache, capsys, model):
    line = _upscale_line(workspace, model, MODELS[model][1], capsys)
    assert line.startswith(f"edgesr: {MODELS[model][1]} on cpu at fp32"), line


def test_ir_is_built_once_into_the_engine_cache(workspace, cache):
    with create_runtime("sd-upscaler-openvino", workspace / "sd", steps=1):
        pass
    built = sorted(p.name for p in (workspace / "cache" / "engines" /
                                    "sd-upscaler-openvino").glob("*/model.xml"))
    with create_runtime("sd-upscaler-openvino", workspace / "sd", steps=1):
        pass
    again = sorted(p.name for p in (workspace / "cache" / "engines" /
                                    "sd-upscaler-openvino").glob("*/model.xml"))
    assert len(built) >= 2 and built == again  # the UNet's and the VAE's IRs, reused


def test_compare_runs_engines_side_by_side(workspace, cache, capsys):
    assert main(["compare", str(workspace / "sd"), "-r", "sd-upscaler", "-r",
                 "sd-upscaler-openvino:fp32", "--size", "8", "--atol", "1e-4"]) == 0
    out = capsys.readouterr().out
    assert "sd-upscaler vs sd-upscaler-openvino:fp32" in out and "pass" in out


def test_unknown_precision_is_one_line(workspace, cache, capsys):
    assert main(["upscale", str(workspace / "in.png"), "-m", str(workspace / "sd"), "-b",
                 "sd-upscaler-openvino:int4", "-q"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("edgesr: error: precision must be one of") and "'int4'" in err
    assert err.count("\n") == 1


def test_missing_device_is_one_line(workspace, cache):
    from edgesr.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="device 'NPU.7' not found"):
        create_runtime("sr3-openvino", workspace / "sr3.onnx", scale=2,
                       device="NPU.7").activate()
