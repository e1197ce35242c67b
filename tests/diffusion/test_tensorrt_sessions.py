"""The samplers on TensorRT (sd-upscaler-tensorrt, sr3-tensorrt): the engines' shape ranges,
the one-line refusal without TensorRT, and (with TensorRT and an NVIDIA GPU) FP16 parity with
the ONNX Runtime FP32 sampler through the CLI."""

import numpy as np
import pytest
from PIL import Image
from tiny_models import export_tiny_diffusion

from edgesr.cli import main
from edgesr.diffusion.tensorrt_sessions import MAX_SEQUENCE, TensorRTSessionOptions, input_ranges
from edgesr.errors import BackendUnavailableError, EdgesrError
from edgesr.imageio import read_image
from edgesr.runtimes import create_runtime
from edgesr.runtimes.tensorrt_build import unavailable_reason

pytest.importorskip("diffusers", reason="diffusers is not installed: "
                    "pip install 'edgesr[diffusion]'")
REASON = unavailable_reason()
#: FP16 engine vs the ONNX Runtime FP32 sampler, tiny SD x4, 3 steps: not measured here (no
#: GPU); the OpenVINO FP16 sampler measured 60.2 dB on the same check. Bound with margin.
FP16_MIN_PSNR = 40.0


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    root = export_tiny_diffusion(tmp_path_factory.mktemp("trt"))
    Image.fromarray(np.full((12, 16, 3), 100, np.uint8)).save(root / "in.png")
    return root


def test_profile_spans_latent_sizes_guidance_batch_and_the_sequence():
    profile = TensorRTSessionOptions(min_latent=8, opt_latent=32, max_latent=64).build_options()
    assert profile.profile.batch == (1, 2, 2) and profile.precision == "fp16"
    sample = input_ranges((-1, 7, -1, -1), profile.profile)
    assert sample == [(1, 7, 8, 8), (2, 7, 32, 32), (2, 7, 64, 64)]
    assert input_ranges((-1,), profile.profile) == [(1,), (2,), (2,)]
    embeds = input_ranges((-1, -1, 1024), profile.profile)
    assert embeds == [(1, 1, 1024), (2, MAX_SEQUENCE, 1024), (2, MAX_SEQUENCE, 1024)]


def test_bad_options_are_one_line():
    with pytest.raises(EdgesrError, match="precision must be one of fp16, fp32"):
        create_runtime("sd-upscaler-tensorrt", "x", precision="bf16")
    with pytest.raises(EdgesrError, match="max_batch 1 or 2"):
        create_runtime("sr3-tensorrt", "x.onnx", max_batch=4)


@pytest.mark.skipif(REASON is None, reason="TensorRT is usable here")
def test_without_tensorrt_the_backend_says_what_is_missing(sd, capsys):
    code = main(["upscale", str(sd / "in.png"), "-m", str(sd / "sd"), "-b",
                 "sd-upscaler-tensorrt", "-o", str(sd / "out.png"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "tensorrt" in err and not (sd / "out.png").exists()
    with pytest.raises(BackendUnavailableError):
        create_runtime("sr3-tensorrt", sd / "x.onnx", scale=2).activate()


@pytest.mark.skipif(REASON is not None, reason=f"needs TensorRT and an NVIDIA GPU: {REASON}")
def test_fp16_engine_matches_onnxruntime_fp32_sampler(sd, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    outs = {}
    for backend in ("sd-upscaler", "sd-upscaler-tensorrt:fp16"):
        out = tmp_path / f"{backend.replace(':', '-')}.png"
        assert main(["upscale", str(sd / "in.png"), "-m", str(sd / "sd"), "-b", backend, "-o",
                     str(out), "--tile", "0", "--bit-depth", "16", "--steps", "3", "-q"]) == 0
        outs[backend] = read_image(out).pixels.astype(np.float64)
    mse = np.mean((outs["sd-upscaler"] - outs["sd-upscaler-tensorrt:fp16"]) ** 2)
    assert 10 * np.log10(1 / max(mse, 1e-20)) >= FP16_MIN_PSNR
