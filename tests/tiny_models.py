"""A small registry of tiny random-initialised models, one per family edgesr supports.

Tests import ``TINY_MODELS`` / ``make_tiny`` instead of defining their own networks, so every
suite exercises the same families. Weights are seeded: same name, same model.
"""

import torch

from edgesr.models.compact import SRVGGNetCompact
from edgesr.models.rrdbnet import RRDBNet
from edgesr.models.sr3 import SR3UNet

TINY_MODELS = {
    "rrdb_x4": lambda: RRDBNet(3, 3, scale=4, num_feat=16, num_block=2, num_grow_ch=8),
    "rrdb_x2": lambda: RRDBNet(3, 3, scale=2, num_feat=16, num_block=1, num_grow_ch=8),
    "rrdb_x1": lambda: RRDBNet(3, 3, scale=1, num_feat=16, num_block=1, num_grow_ch=8),
    "compact_x4": lambda: SRVGGNetCompact(3, 3, num_feat=16, num_conv=4, upscale=4),
    "compact_x2": lambda: SRVGGNetCompact(3, 3, num_feat=16, num_conv=2, upscale=2),
}

TINY_SCALES = {"rrdb_x4": 4, "rrdb_x2": 2, "rrdb_x1": 1, "compact_x4": 4, "compact_x2": 2}


def make_tiny(name: str, seed: int = 0) -> torch.nn.Module:
    """Build tiny model ``name`` with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    model = TINY_MODELS[name]()
    return model.eval()


#: Tiny SR3 denoisers (Janspiry's key layout), by SR3UNet keyword arguments: not one-pass
#: upscalers, so not in TINY_MODELS. Channels stay multiples of the default 32 norm groups.
TINY_DENOISERS = {
    "sr3": dict(inner_channel=32, channel_mults=(1, 2, 2), attn_levels=(1,), res_blocks=1),
    "sr3_attn0": dict(inner_channel=32, channel_mults=(1, 1), attn_levels=(0,), res_blocks=2),
}

#: diffusers configs of a tiny Stable Diffusion x4 upscaler shaped like the real one: the UNet
#: takes 4 latent + 3 image channels, the noise level as class label (num_class_embeds, no
#: class_embed_type), SD2 linear projections and cross-attention-only blocks; the VAE decodes x4.
TINY_SD_X4_UNET = dict(
    sample_size=16, in_channels=7, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
    attention_head_dim=2, norm_num_groups=4, num_class_embeds=1000, class_embed_type=None,
    only_cross_attention=(True, True), use_linear_projection=True)
TINY_SD_X4_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
    block_out_channels=(8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=4, sample_size=32,
    scaling_factor=0.08333)


def make_tiny_denoiser(name: str, seed: int = 0) -> SR3UNet:
    """Build tiny denoiser ``name`` with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    return SR3UNet(**TINY_DENOISERS[name]).eval()


#: The schedulers of stabilityai/stable-diffusion-x4-upscaler (saved as scheduler_config.json):
#: DDIM with v-prediction for sampling, DDPM for noising the low-res image.
TINY_SD_X4_SCHEDULER = dict(
    _class_name="DDIMScheduler", beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
    clip_sample=False, num_train_timesteps=1000, prediction_type="v_prediction",
    set_alpha_to_one=False, steps_offset=1)
TINY_SD_X4_LOW_RES_SCHEDULER = dict(
    _class_name="DDPMScheduler", beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
    clip_sample=True, num_train_timesteps=1000, variance_type="fixed_small")
#: A tiny CLIP text encoder (hidden size = the tiny UNet's cross_attention_dim) and a BPE vocab
#: that spells "a cat"; anything else tokenizes to <|endoftext|>.
TINY_CLIP_TEXT = dict(vocab_size=9, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, max_position_embeddings=8, bos_token_id=0,
                      eos_token_id=1, pad_token_id=1)
TINY_CLIP_VOCAB = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "cat</w>": 3, "c": 4,
                   "a": 5, "t": 6, "ca": 7, "t</w>": 8}
TINY_CLIP_MERGES = "#version: 0.2\nc a\nca t</w>\n"


def write_tiny_sd_x4(folder, *, text_encoder: bool = False, seed: int = 0):
    """Write a tiny diffusers x4 upscaler folder (UNet, VAE, schedulers, model_index.json and,
    with ``text_encoder``, a tiny CLIP text encoder + tokenizer); return (unet, vae)."""
    import json
    from pathlib import Path

    import diffusers

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(**TINY_SD_X4_UNET).eval()
    vae = diffusers.AutoencoderKL(**TINY_SD_X4_VAE).eval()
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    for name, config in (("scheduler", TINY_SD_X4_SCHEDULER),
                         ("low_res_scheduler", TINY_SD_X4_LOW_RES_SCHEDULER)):
        (folder / name).mkdir()
        (folder / name / "scheduler_config.json").write_text(json.dumps(config))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionUpscalePipeline", "max_noise_level": 350,
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}))
    if text_encoder:
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        CLIPTextModel(CLIPTextConfig(**TINY_CLIP_TEXT)).eval().save_pretrained(
            folder / "text_encoder")
        (folder / "vocab.json").write_text(json.dumps(TINY_CLIP_VOCAB))
        (folder / "merges.txt").write_text(TINY_CLIP_MERGES)
        CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                      model_max_length=8).save_pretrained(folder / "tokenizer")
        (folder / "vocab.json").unlink()
        (folder / "merges.txt").unlink()
    return unet, vae


#: A short noise schedule for the tiny SR3 checkpoint: the full loop is cheap.
TINY_SR3_BETAS = (1e-3, 0.0608, 0.1206, 0.1804, 0.2402, 0.3)


def export_tiny_diffusion(root):
    """Export the tiny SD x4 upscaler to ``root/sd`` (with random prompt embeddings [2, 8, 8]:
    no text encoder) and the tiny SR3, saved as Janspiry's GaussianDiffusion does with
    ``TINY_SR3_BETAS``, to ``root/sr3.onnx``; return ``root``."""
    from pathlib import Path

    import numpy as np

    from edgesr.cli import main

    root = Path(root)
    write_tiny_sd_x4(root / "src")
    assert main(["export", str(root / "src"), "-o", str(root / "sd")]) == 0
    np.save(root / "sd" / "prompt_embeds.npy",
            np.random.default_rng(0).standard_normal((2, 8, 8)).astype(np.float32))
    model = make_tiny_denoiser("sr3")
    betas = torch.tensor(TINY_SR3_BETAS, dtype=torch.float32)
    torch.save({**{"denoise_fn." + k: v for k, v in model.state_dict().items()},
                "betas": betas, "alphas_cumprod": torch.ones(len(betas))},
               root / "sr3_gen.pth")
    assert main(["export", str(root / "sr3_gen.pth"), "-o", str(root / "sr3.onnx")]) == 0
    return root
