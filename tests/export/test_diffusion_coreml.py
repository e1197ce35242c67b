"""CoreML packages of the diffusion graphs (``edgesr export ... --coreml``) on the tiny SD x4 and
SR3 models: validated by spec here (inputs, flexible shape ranges, element types, compute
precision, outputs, metadata); prediction against the ONNX Runtime sampler only on macOS."""

import sys

import numpy as np
import pytest
from tiny_models import make_tiny_denoiser, write_tiny_sd_x4

from edgesr.cli import main
from edgesr.diffusion.coreml_sessions import open_package
from edgesr.errors import CheckpointError, EdgesrError

pytest.importorskip("coremltools", reason="coremltools is not installed: pip install coremltools")
pytest.importorskip("diffusers", reason="diffusers is not installed: "
                    "pip install 'edgesr[diffusion]'")
from edgesr.export.diffusion_coreml import MAX_LATENT, read_package_io  # noqa: E402

ON_MACOS = sys.platform == "darwin"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny SD x4 exported with --coreml fp16 (``sd/``) and the tiny SR3 with --coreml fp32
    (``sr3.onnx`` + ``sr3.mlpackage``)."""
    import torch

    root = tmp_path_factory.mktemp("coreml")
    write_tiny_sd_x4(root / "src")
    assert main(["export", str(root / "src"), "-o", str(root / "sd"), "--coreml", "fp16"]) == 0
    np.save(root / "sd" / "prompt_embeds.npy",
            np.random.default_rng(0).standard_normal((2, 8, 8)).astype(np.float32))
    model = make_tiny_denoiser("sr3")
    torch.save({"denoise_fn." + k: v for k, v in model.state_dict().items()},
               root / "sr3_gen.pth")
    assert main(["export", str(root / "sr3_gen.pth"), "-o", str(root / "sr3.onnx"),
                 "--coreml", "fp32"]) == 0
    return root


def test_sd_unet_package_spec(exported):
    io = read_package_io(exported / "sd" / "unet.mlpackage")
    multiple = int(io.metadata["edgesr.size_multiple"])
    spatial = (multiple, MAX_LATENT)
    assert io.inputs == {
        "sample": ("float32", ((1, 2), (7, 7), spatial, spatial)),
        "timestep": ("float32", ((1, 2),)),
        "encoder_hidden_states": ("float32", ((1, 2), (1, 77), (8, 8))),
        "class_labels": ("int32", ((1, 2),))}
    assert io.outputs == ("out_sample",) and io.compute_precision == "fp16"
    assert io.metadata["edgesr.role"] == "unet" and io.metadata["edgesr.precision"] == "fp16"
    assert io.metadata["edgesr.vae_scaling_factor"]


def test_sd_vae_package_spec(exported):
    io = read_package_io(exported / "sd" / "vae_decoder.mlpackage")
    assert io.inputs == {"latent_sample": ("float32", ((1, 2), (4, 4), (1, MAX_LATENT),
                                                       (1, MAX_LATENT)))}
    assert io.outputs == ("sample",) and io.compute_precision == "fp16"
    assert io.metadata["edgesr.role"] == "vae_decoder" and io.metadata["edgesr.scale"] == "4"


def test_sr3_package_spec_at_fp32(exported):
    io = read_package_io(exported / "sr3.mlpackage")
    assert set(io.inputs) == {"x", "noise_level"}
    kind, ranges = io.inputs["x"]
    assert kind == "float32" and ranges[:2] == ((1, 2), (6, 6))
    assert all(lo >= 1 and hi == MAX_LATENT - MAX_LATENT % lo for lo, hi in ranges[2:])
    assert io.outputs == ("noise",) and io.compute_precision == "fp32"
    assert io.metadata["edgesr.role"] == "denoiser" and io.metadata["edgesr.arch"] == "SR3"


def test_missing_package_names_the_export_flag(exported, tmp_path):
    (tmp_path / "unet.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match="--coreml fp16"):
        open_package("sd-upscaler-coreml", tmp_path / "unet.onnx", "all", None)


def test_package_at_another_precision_is_refused(exported):
    with pytest.raises(EdgesrError, match="converted at fp16, not fp32"):
        open_package("sd-upscaler-coreml", exported / "sd" / "unet.onnx", "all", "fp32")


def test_coreml_flag_on_an_upscaler_is_one_line(tmp_path, capsys):
    import torch
    from tiny_models import make_tiny

    torch.save(make_tiny("compact_x4").state_dict(), tmp_path / "c.pth")
    assert main(["export", str(tmp_path / "c.pth"), "-o", str(tmp_path / "c.onnx"),
                 "--coreml", "fp16"]) != 0
    err = capsys.readouterr().err
    assert "--coreml is for diffusion models" in err and err.count("\n") == 1


@pytest.mark.skipif(ON_MACOS, reason="checks the refusal off macOS")
def test_upscale_off_macos_is_one_line(exported, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "-m", str(exported / "sd"), "-b",
                 "sd-upscaler-coreml", "-o", str(tmp_path / "out.png"), "-q"]) != 0
    err = capsys.readouterr().err
    assert "sd-upscaler-coreml: CoreML prediction needs macOS" in err and err.count("\n") == 1


@pytest.mark.skipif(not ON_MACOS, reason="CoreML prediction needs macOS; the packages are "
                    "validated by spec here")
@pytest.mark.parametrize(("model", "backend", "extra", "min_psnr"), [
    ("sd", "sd-upscaler", ["--steps", "3"], 35.0),
    ("sr3.onnx", "sr3", ["--scale", "2"], 35.0)])
def test_coreml_sampler_matches_onnxruntime_fp32(exported, tmp_path, model, backend, extra,
                                                 min_psnr):
    from PIL import Image

    from edgesr.imageio import read_image

    Image.fromarray(np.random.default_rng(1).integers(0, 255, (12, 16, 3), np.uint8)).save(
        tmp_path / "in.png")
    outputs = []
    for variant in (backend, f"{backend}-coreml"):
        out = tmp_path / f"{variant}.png"
        assert main(["upscale", str(tmp_path / "in.png"), "-m", str(exported / model), "-b",
                     variant, "-o", str(out), "--tile", "0", "--bit-depth", "16", "-q",
                     *extra]) == 0
        outputs.append(read_image(out).pixels.astype(np.float64))
    mse = float(np.mean((outputs[0] - outputs[1]) ** 2))
    assert mse == 0 or 10 * np.log10(1 / mse) >= min_psnr
