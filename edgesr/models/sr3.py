"""SR3 (Saharia et al., "Image Super-Resolution via Iterative Refinement"): the denoising UNet.

Parameter names follow the widely used PyTorch implementation (Janspiry's
``model/sr3_modules/unet.py``), so its ``*_gen.pth`` checkpoints load as they are. The network
is a denoiser, not a one-pass upscaler: it maps ``x``, the bicubic-upsampled low-resolution
image concatenated with the noisy high-resolution image (6 channels), and a continuous
``noise_level`` (the square root of the cumulative alpha, one per batch item) to the predicted
noise, at the high resolution. Sampling (the refinement loop) is not part of it; its noise
schedule is: ``SR3UNet.betas`` (the checkpoint's, when it holds one), ``linear_betas`` (Janspiry's
default), ``respace_betas`` (fewer steps) and ``sampling_coefficients`` (Janspiry's buffers).
"""

import math
import re
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesr.errors import UnsupportedArchitectureError

ARCHITECTURE = "SR3"
#: Janspiry's defaults for what a state_dict does not show: GroupNorm groups (``norm_groups``
#: absent from the config) and dropout (inactive at inference anyway).
DEFAULT_NORM_GROUPS = 32
DEFAULT_DROPOUT = 0.0
#: Janspiry's noise schedule (``config/sr_sr3_16_128.json``, train and val): linear betas from
#: ``linear_start`` to ``linear_end`` over ``n_timestep`` steps.
JANSPIRY_SCHEDULE = dict(n_timestep=2000, linear_start=1e-6, linear_end=1e-2)


class _NoiseLevelEncoding(nn.Module):
    """Sinusoidal encoding of the continuous noise level (WaveGrad's), ``dim`` features."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        steps = torch.arange(half, dtype=torch.float32) / half
        self.register_buffer("freqs", torch.exp(-math.log(1e4) * steps), persistent=False)

    def forward(self, noise_level: torch.Tensor) -> torch.Tensor:
        angles = noise_level[:, None] * self.freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _Block(nn.Module):
    """GroupNorm, SiLU, (dropout), 3x3 conv: ``block.0`` ... ``block.3`` in checkpoints."""

    def __init__(self, dim: int, dim_out: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.block = nn.Sequential(nn.GroupNorm(groups, dim), nn.SiLU(),
                                   nn.Dropout(dropout) if dropout else nn.Identity(),
                                   nn.Conv2d(dim, dim_out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _NoiseShift(nn.Module):
    """The per-channel shift a block adds from the noise embedding (``FeatureWiseAffine``)."""

    def __init__(self, emb_dim: int, channels: int):
        super().__init__()
        self.noise_func = nn.Sequential(nn.Linear(emb_dim, channels))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.noise_func(emb)[:, :, None, None]


class _ResBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.noise_func = _NoiseShift(emb_dim, dim_out)
        self.block1 = _Block(dim, dim_out, groups)
        self.block2 = _Block(dim_out, dim_out, groups, dropout)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.noise_func(emb)
        return self.block2(h) + self.res_conv(x)


class _SelfAttention(nn.Module):
    """Single-head self-attention over all pixels, scaled by 1/sqrt(channels)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.scale = channels ** -0.5
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).flatten(2).chunk(3, dim=1)  # each B, C, HW
        attn = torch.softmax(q.transpose(1, 2) @ k * self.scale, dim=-1)  # B, HW (q), HW (k)
        return x + self.out((v @ attn.transpose(1, 2)).reshape_as(x))


class _ResAttnBlock(nn.Module):
    """``ResnetBlocWithAttn``: a residual block, optionally followed by self-attention."""

    def __init__(self, dim: int, dim_out: int, *, emb_dim: int, groups: int, dropout: float,
                 attn: bool):
        super().__init__()
        self.res_block = _ResBlock(dim, dim_out, emb_dim, groups, dropout)
        self.attn = _SelfAttention(dim_out, groups) if attn else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.attn(self.res_block(x, emb))


class _Downsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class SR3UNet(nn.Module):
    """The SR3 UNet: ``forward(x, noise_level)`` -> predicted noise, ``out_channel`` channels.

    ``x``: [B, in_channel, H, W], the condition (upsampled low-resolution image) then the noisy
    image, both in [-1, 1]; ``noise_level``: [B] (or [B, 1]). H and W must be multiples of
    ``size_multiple`` = 2 ** (levels - 1). ``channel_mults``: channels per level, in units of
    ``inner_channel``; ``attn_levels``: the levels (0 = full resolution) whose blocks attend;
    Janspiry's ``attn_res`` [16] at ``image_size`` 128 is level 3 (128 / 16 = 2 ** 3).
    Defaults are Janspiry's ``UNet`` defaults. ``betas``: the training noise schedule (float64
    [T]) when the checkpoint held one, else None; a buffer, not part of the state_dict.
    """

    def __init__(self, *, in_channel: int = 6, out_channel: int = 3, inner_channel: int = 32,
                 norm_groups: int = DEFAULT_NORM_GROUPS,
                 channel_mults: tuple[int, ...] = (1, 2, 4, 8, 8),
                 attn_levels: tuple[int, ...] = (4,), res_blocks: int = 3,
                 dropout: float = DEFAULT_DROPOUT):
        super().__init__()
        emb = inner_channel
        self.register_buffer("betas", None, persistent=False)
        self.size_multiple = 2 ** (len(channel_mults) - 1)
        self.noise_level_mlp = nn.Sequential(_NoiseLevelEncoding(emb), nn.Linear(emb, emb * 4),
                                             nn.SiLU(), nn.Linear(emb * 4, emb))
        opts = dict(emb_dim=emb, groups=norm_groups, dropout=dropout)
        downs: list[nn.Module] = [nn.Conv2d(in_channel, inner_channel, 3, padding=1)]
        skips = [inner_channel]
        ch = inner_channel
        for level, mult in enumerate(channel_mults):
            for _ in range(res_blocks):
                downs.append(_ResAttnBlock(ch, inner_channel * mult, attn=level in attn_levels,
                                           **opts))
                ch = inner_channel * mult
                skips.append(ch)
            if level < len(channel_mults) - 1:
                downs.append(_Downsample(ch))
                skips.append(ch)
        self.downs = nn.ModuleList(downs)
        self.mid = nn.ModuleList([_ResAttnBlock(ch, ch, attn=True, **opts),
                                  _ResAttnBlock(ch, ch, attn=False, **opts)])
        ups: list[nn.Module] = []
        for level in reversed(range(len(channel_mults))):
            for _ in range(res_blocks + 1):
                out = inner_channel * channel_mults[level]
                ups.append(_ResAttnBlock(ch + skips.pop(), out, attn=level in attn_levels,
                                         **opts))
                ch = out
            if level > 0:
                ups.append(_Upsample(ch))
        self.ups = nn.ModuleList(ups)
        self.final_conv = _Block(ch, out_channel, norm_groups)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        emb = self.noise_level_mlp(noise_level.reshape(-1))
        skips = []
        for layer in self.downs:
            x = layer(x, emb) if isinstance(layer, _ResAttnBlock) else layer(x)
            skips.append(x)
        for layer in self.mid:
            x = layer(x, emb)
        for layer in self.ups:
            if isinstance(layer, _ResAttnBlock):
                x = layer(torch.cat((x, skips.pop()), dim=1), emb)
            else:
                x = layer(x)
        return self.final_conv(x)


def strip_diffusion_wrapper(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The UNet's own tensors of a ``GaussianDiffusion`` state_dict: keys under ``denoise_fn.``,
    prefix stripped, plus its ``betas`` buffer if present (the other noise-schedule buffers
    derive from it and are dropped)."""
    prefix = "denoise_fn."
    sd = {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
    if "betas" in state_dict:
        sd["betas"] = state_dict["betas"]
    return sd


def linear_betas(n_timestep: int, linear_start: float, linear_end: float) -> np.ndarray:
    """Janspiry's ``make_beta_schedule("linear", ...)``: float64 [n_timestep]."""
    return np.linspace(linear_start, linear_end, n_timestep, dtype=np.float64)


def respace_betas(betas: np.ndarray, steps: int) -> np.ndarray:
    """The betas of ``steps`` evenly spaced timesteps of ``betas`` (improved DDPM's
    ``space_timesteps`` + ``SpacedDiffusion``): timesteps round(i * (T - 1) / (steps - 1)), each
    new beta 1 - alphas_cumprod[t] / alphas_cumprod[previous kept t], so the kept timesteps keep
    their cumulative alphas (and noise levels). ``steps`` = T gives ``betas`` back."""
    total = len(betas)
    if not 2 <= steps <= total:
        raise ValueError(f"steps must be 2 to {total}, got {steps}")
    kept = np.array([round(i * (total - 1) / (steps - 1)) for i in range(steps)])
    alphas_cumprod = np.cumprod(1.0 - np.asarray(betas, np.float64))[kept]
    return 1.0 - alphas_cumprod / np.concatenate([[1.0], alphas_cumprod[:-1]])


def sampling_coefficients(betas: np.ndarray) -> dict[str, np.ndarray]:
    """Janspiry's ``set_new_noise_schedule`` buffers for sampling, computed in float64 and kept
    as float32 as it keeps them: ``noise_level`` (sqrt of the cumulative alpha, the UNet's
    conditioning), ``sqrt_recip_alphas_cumprod``, ``sqrt_recipm1_alphas_cumprod``,
    ``posterior_mean_coef1``/``2`` and ``posterior_log_variance_clipped``, each [T].
    Raises ValueError unless every beta lies in (0, 1)."""
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or not len(betas) or not np.all((betas > 0) & (betas < 1)):
        raise ValueError("betas must be a non-empty 1-D schedule with every beta in (0, 1)")
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    prev = np.append(1.0, alphas_cumprod[:-1])
    variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
    coefficients = dict(
        noise_level=np.sqrt(alphas_cumprod),
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod - 1),
        posterior_mean_coef1=betas * np.sqrt(prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
        posterior_log_variance_clipped=np.log(np.maximum(variance, 1e-20)))
    return {k: v.astype(np.float32) for k, v in coefficients.items()}


def sr3_hyperparameters(sd: Mapping[str, torch.Tensor]) -> dict:
    """SR3UNet keyword arguments read off the tensor shapes of a (stripped) SR3 state_dict.

    ``norm_groups`` and ``dropout`` do not show in a state_dict: they get Janspiry's defaults
    (32 and 0, the latter irrelevant at inference). Raises UnsupportedArchitectureError.
    """
    inner, in_channel = (int(v) for v in _tensor(sd, "downs.0.weight").shape[:2])
    levels: list[list[tuple[int, bool]]] = [[]]
    ids = sorted({int(m.group(1)) for k in sd if (m := re.match(r"downs\.(\d+)\.", k))})
    for i in ids[1:]:
        if f"downs.{i}.conv.weight" in sd:
            levels.append([])
        else:
            out = int(_tensor(sd, f"downs.{i}.res_block.block1.block.3.weight").shape[0])
            levels[-1].append((out, f"downs.{i}.attn.qkv.weight" in sd))
    res_blocks = len(levels[0])
    if not res_blocks or any(len(blocks) != res_blocks for blocks in levels):
        raise UnsupportedArchitectureError(
            f"{ARCHITECTURE}: levels hold {[len(b) for b in levels]} residual blocks, not the "
            "same number each")
    channels = [blocks[0][0] for blocks in levels]
    if any(c % inner or c % DEFAULT_NORM_GROUPS for c in [inner, *channels]):
        raise UnsupportedArchitectureError(
            f"{ARCHITECTURE}: channels {[inner, *channels]} are not all multiples of the inner "
            f"channel {inner} and the default {DEFAULT_NORM_GROUPS} norm groups")
    out_channel = int(_tensor(sd, "final_conv.block.3.weight").shape[0])
    return dict(in_channel=in_channel, out_channel=out_channel, inner_channel=inner,
                norm_groups=DEFAULT_NORM_GROUPS, channel_mults=tuple(c // inner for c in channels),
                attn_levels=tuple(i for i, blocks in enumerate(levels) if blocks[0][1]),
                res_blocks=res_blocks, dropout=DEFAULT_DROPOUT)


def _tensor(sd: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in sd:
        raise UnsupportedArchitectureError(f"{ARCHITECTURE}: state_dict has no {key!r}")
    return sd[key]
