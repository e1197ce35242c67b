"""SR3: Janspiry's key layout, detection off tensor shapes, loading (the GaussianDiffusion
``betas`` buffer kept), and a clear pointer to the sr3 backend from torch and onnxruntime."""

import inspect

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from tiny_models import TINY_DENOISERS, make_tiny_denoiser

from edgesr.cli import main
from edgesr.errors import UnsupportedArchitectureError
from edgesr.fsutil import sha256_file
from edgesr.models import detect_architecture, load_model, model_from_state_dict
from edgesr.models.sr3 import SR3UNet

#: Keys as Janspiry's model/sr3_modules/unet.py names them (the tiny "sr3" layout).
JANSPIRY_KEYS = (
    "noise_level_mlp.1.weight", "noise_level_mlp.3.bias", "downs.0.weight",
    "downs.1.res_block.noise_func.noise_func.0.weight", "downs.1.res_block.block1.block.0.weight",
    "downs.1.res_block.block2.block.3.weight", "downs.2.conv.weight",
    "downs.3.res_block.res_conv.weight", "downs.3.attn.qkv.weight", "downs.3.attn.out.bias",
    "mid.0.attn.norm.weight", "mid.1.res_block.block1.block.3.bias",
    "ups.0.res_block.res_conv.weight", "ups.2.conv.weight", "final_conv.block.0.weight",
    "final_conv.block.3.weight",
)
SCHEDULE = ("betas", "alphas_cumprod", "posterior_variance")  # GaussianDiffusion buffers


def _expected(name: str) -> dict:
    defaults = {k: p.default for k, p in inspect.signature(SR3UNet).parameters.items()}
    return {**defaults, **TINY_DENOISERS[name]}


def _save(model: torch.nn.Module, path, layout: str):
    sd = model.state_dict()
    if layout in ("diffusion", "dataparallel"):  # Janspiry's *_gen.pth: the GaussianDiffusion
        prefix = "module.denoise_fn." if layout == "dataparallel" else "denoise_fn."
        sd = {**{prefix + k: v for k, v in sd.items()},
              **{("module." if layout == "dataparallel" else "") + k: torch.linspace(0, 1, 10)
                 for k in SCHEDULE}}
    if path.suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    return path


def test_parameter_names_follow_janspiry():
    keys = set(make_tiny_denoiser("sr3").state_dict())
    assert set(JANSPIRY_KEYS) <= keys
    assert not any("freqs" in k or "ups.0.attn" in k for k in keys)


@pytest.mark.parametrize("name", sorted(TINY_DENOISERS))
@pytest.mark.parametrize("layout, suffix", [("plain", ".pth"), ("diffusion", ".pth"),
                                            ("dataparallel", ".pth"),
                                            ("diffusion", ".safetensors")])
def test_detected_and_loaded(tmp_path, name, layout, suffix):
    model = make_tiny_denoiser(name)
    path = _save(model, tmp_path / f"{name}_gen{suffix}", layout)
    desc = load_model(path)
    assert desc.architecture == "SR3" and desc.scale == 1
    assert (desc.in_channels, desc.out_channels) == (6, 3)
    assert desc.hyperparameters == _expected(name)
    levels = len(TINY_DENOISERS[name]["channel_mults"])
    assert desc.size_multiple == 2 ** (levels - 1)
    assert desc.source_sha256 == sha256_file(path)
    if layout == "plain":
        assert desc.model.betas is None
    else:  # the schedule travels with the model, outside its state_dict
        torch.testing.assert_close(desc.model.betas, torch.linspace(0, 1, 10).double())
        assert "betas" not in desc.model.state_dict()
    x = torch.randn(2, 6, 4 * desc.size_multiple, 3 * desc.size_multiple)
    level = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        out = desc.model(x, level)
        torch.testing.assert_close(out, model(x, level), rtol=0, atol=0)
        torch.testing.assert_close(desc.model(x, level[:, None]), out)  # Janspiry's [B, 1]
    assert out.shape == (2, 3, *x.shape[2:])


def test_detect_architecture_by_keys():
    sd = {"denoise_fn." + k: v for k, v in make_tiny_denoiser("sr3").state_dict().items()}
    assert detect_architecture(sd).name == "SR3"


def test_broken_sr3_state_dicts_are_clear_errors():
    sd = make_tiny_denoiser("sr3").state_dict()
    missing = {k: v for k, v in sd.items() if not k.startswith("downs.3.")}
    with pytest.raises(UnsupportedArchitectureError, match="levels hold") as info:
        model_from_state_dict(missing)
    assert "\n" not in str(info.value)
    truncated = {k: v for k, v in sd.items() if not k.startswith("ups.1.")}
    with pytest.raises(UnsupportedArchitectureError, match="looks like SR3 but does not fit"):
        model_from_state_dict(truncated)
    narrow = SR3UNet(inner_channel=16, norm_groups=16, channel_mults=(1, 2), attn_levels=(),
                     res_blocks=1)
    with pytest.raises(UnsupportedArchitectureError, match="32 norm groups"):
        model_from_state_dict(narrow.state_dict())


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_upscale_points_a_denoiser_to_sr3(tmp_path, monkeypatch, capsys, backend):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    checkpoint = _save(make_tiny_denoiser("sr3"), tmp_path / "sr3_gen.pth", "diffusion")
    image = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(image)
    code = main(["upscale", str(image), "-o", str(tmp_path / "out.png"), "-m", str(checkpoint),
                 "--backend", backend, "-q"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "SR3 diffusion denoiser" in err and "--backend sr3" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "sr3_gen.pth"]
