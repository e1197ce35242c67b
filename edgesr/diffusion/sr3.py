"""SR3 sampler: the whole refinement loop of an exported SR3 denoiser (``edgesr export``).

The .onnx file (opened by the session factory it is given, see ``sessions``; the sr3 backend
gives ONNX Runtime's) maps ``x`` [B, 6, H, W] (condition, noisy image) and ``noise_level`` [B]
to the predicted noise. ``sample`` takes a low-resolution RGB tile in [0, 1] and samples it as
Janspiry's ``GaussianDiffusion.p_sample_loop`` (Image-Super-Resolution-via-Iterative-Refinement)
does: the condition is the tile upsampled ``scale`` times (PIL bicubic, as its data preparation
resizes) in [-1, 1]; from x_T ~ N(0, 1), for t = T-1 .. 0, eps = UNet([condition, x_t],
sqrt(alphas_cumprod[t])), x0 = sqrt(1/a_t) x_t - sqrt(1/a_t - 1) eps clipped to [-1, 1], and
x_{t-1} = posterior mean + exp(log variance / 2) z, with no noise at t = 0.

Schedule: linear betas from ``n_timestep``/``linear_start``/``linear_end`` when any of them is
given; else the ``betas`` metadata (the checkpoint's ``GaussianDiffusion`` buffer); else
Janspiry's default (2000 steps, 1e-6 to 1e-2). ``steps`` below T respaces it (``respace_betas``).

Seeding: each tile draws x_T, then each step's noise, from its own generator
(``seeding.tile_generator``), so the same seed gives the same image whatever the
batch, the tile order or the other images of a folder run.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgesr.diffusion.seeding import tile_generator
from edgesr.diffusion.sessions import SessionFactory
from edgesr.errors import CheckpointError, EdgesrError
from edgesr.export.specs import decode_metadata
from edgesr.models.sr3 import (
    JANSPIRY_SCHEDULE,
    linear_betas,
    respace_betas,
    sampling_coefficients,
)


@dataclass(frozen=True, kw_only=True)
class SR3Sampling:
    """``scale``: the upscaling factor (SR3 nets are scale-agnostic: needed unless the model's
    metadata gives a scale above 1; Janspiry's 16->128 models are 8); ``steps``: sampling
    steps, the schedule respaced to that many (None: the full schedule, as Janspiry samples);
    ``seed``: see the module docstring; ``n_timestep``/``linear_start``/``linear_end``: a linear
    schedule instead of the model's (missing ones from Janspiry's default)."""

    scale: int | None = None
    steps: int | None = None
    seed: int = 0
    n_timestep: int | None = None
    linear_start: float | None = None
    linear_end: float | None = None

    def __post_init__(self) -> None:
        if self.scale is not None and self.scale < 1:
            raise EdgesrError("sr3: need scale >= 1")
        if self.steps is not None and self.steps < 2:
            raise EdgesrError(f"sr3: need steps >= 2, got {self.steps}")

    @property
    def linear_schedule(self) -> dict | None:
        """The linear schedule asked for, or None to use the model's."""
        given = {k: getattr(self, k) for k in JANSPIRY_SCHEDULE if getattr(self, k) is not None}
        return {**JANSPIRY_SCHEDULE, **given} if given else None


class SR3Sampler:
    """A loaded SR3 denoiser export; ``sample`` upscales one tile x ``scale``."""

    def __init__(self, path: str | Path, sampling: SR3Sampling, sessions: SessionFactory):
        path = self.path = Path(path)
        self.sampling = sampling
        if path.suffix != ".onnx" or not path.is_file():
            raise CheckpointError(f"{path}: the sr3 backend runs an SR3 denoiser's .onnx export "
                                  "(or its .pth/.safetensors checkpoint, exported on the fly)")
        self.session = sessions(path)
        meta = decode_metadata(self.session.metadata(), str(path))
        if meta.get("role") != "denoiser" or meta.get("arch") != "SR3":
            raise CheckpointError(f"{path}: not an SR3 denoiser exported by edgesr export "
                                  f"(role {meta.get('role')!r}, arch {meta.get('arch')!r})")
        self.channels = int(meta["out_channels"])
        if int(meta["in_channels"]) != 2 * self.channels:
            raise CheckpointError(f"{path}: an SR3 denoiser conditioned on the image takes "
                                  f"{2 * self.channels} input channels, not "
                                  f"{meta['in_channels']}")
        self.scale = sampling.scale or (int(meta["scale"]) if int(meta["scale"]) > 1 else 0)
        if not self.scale:
            raise EdgesrError("sr3: an SR3 model does not know its upscaling factor; pass "
                              "--scale N (e.g. 8 for a 16->128 model)")
        self.coefficients = schedule(sampling, meta, path)
        multiple = int(meta.get("size_multiple", 1))
        self.size_multiple = multiple // math.gcd(multiple, self.scale)

    def sample(self, tile: np.ndarray) -> np.ndarray:
        """One [C, h, w] tile in [0, 1] -> [1, C, h*scale, w*scale] in [0, 1]."""
        c = self.coefficients
        generator = tile_generator(self.sampling.seed, tile)
        condition = torch.from_numpy(upsample(tile, self.scale)[None] * 2 - 1)
        img = torch.randn(condition.shape, generator=generator)
        for t in reversed(range(len(c["noise_level"]))):
            feed = {"x": torch.cat([condition, img], dim=1).numpy(),
                    "noise_level": c["noise_level"][t:t + 1].numpy()}
            noise = torch.from_numpy(self.session.run(feed)[0])
            x_recon = c["sqrt_recip_alphas_cumprod"][t] * img \
                - c["sqrt_recipm1_alphas_cumprod"][t] * noise
            x_recon = x_recon.clamp(-1.0, 1.0)
            img = c["posterior_mean_coef1"][t] * x_recon + c["posterior_mean_coef2"][t] * img
            if t > 0:
                z = torch.randn(img.shape, generator=generator)
                img = img + z * (0.5 * c["posterior_log_variance_clipped"][t]).exp()
        return np.clip(img.numpy() / 2 + 0.5, 0, 1).astype(np.float32)


def schedule(sampling: SR3Sampling, meta: dict, path: Path) -> dict[str, torch.Tensor]:
    """The sampling coefficients of the (respaced) schedule, per the module docstring."""
    linear = sampling.linear_schedule
    if linear is not None:
        betas = linear_betas(**linear)
    elif "betas" in meta:
        betas = np.asarray(json.loads(meta["betas"]), np.float64)
    else:
        betas = linear_betas(**JANSPIRY_SCHEDULE)
    try:
        if sampling.steps is not None and sampling.steps != len(betas):
            betas = respace_betas(betas, sampling.steps)
        return {k: torch.from_numpy(v) for k, v in sampling_coefficients(betas).items()}
    except ValueError as exc:
        raise EdgesrError(f"{path}: bad SR3 noise schedule: {exc}") from None


def upsample(tile: np.ndarray, scale: int) -> np.ndarray:
    """[C, h, w] float32 in [0, 1] -> [C, h*scale, w*scale], PIL bicubic per channel, clipped."""
    _, height, width = tile.shape
    size = (width * scale, height * scale)
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize(
        size, Image.Resampling.BICUBIC)) for p in tile.astype(np.float32)]
    return np.clip(np.stack(planes), 0, 1).astype(np.float32)
