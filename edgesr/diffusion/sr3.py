"""SR3 backend: the whole refinement loop of an exported SR3 denoiser (``edgesr export``).

The .onnx file maps ``x`` [B, 6, H, W] (condition, noisy image) and ``noise_level`` [B] to the
predicted noise. ``infer`` takes low-resolution RGB tiles in [0, 1] and samples each as
Janspiry's ``GaussianDiffusion.p_sample_loop`` (Image-Super-Resolution-via-Iterative-Refinement)
does: the condition is the tile upsampled ``scale`` times (PIL bicubic, as its data preparation
resizes) in [-1, 1]; from x_T ~ N(0, 1), for t = T-1 .. 0, eps = UNet([condition, x_t],
sqrt(alphas_cumprod[t])), x0 = sqrt(1/a_t) x_t - sqrt(1/a_t - 1) eps clipped to [-1, 1], and
x_{t-1} = posterior mean + exp(log variance / 2) z, with no noise at t = 0.

Schedule: linear betas from ``n_timestep``/``linear_start``/``linear_end`` when any of them is
given; else the ``betas`` metadata (the checkpoint's ``GaussianDiffusion`` buffer); else
Janspiry's default (2000 steps, 1e-6 to 1e-2). ``steps`` below T respaces it (``respace_betas``).

Seeding: each tile draws x_T, then each step's noise, from its own generator
(``diffusion_common.tile_generator``), so the same seed gives the same image whatever the
batch, the tile order or the other images of a folder run.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from edgesr.errors import CheckpointError, EdgesrError
from edgesr.export.specs import decode_metadata
from edgesr.models.sr3 import (
    JANSPIRY_SCHEDULE,
    linear_betas,
    respace_betas,
    sampling_coefficients,
)
from edgesr.runtimes.base import Runtime, RuntimeInfo
from edgesr.runtimes.diffusion_common import open_session, tile_generator
from edgesr.runtimes.onnxruntime_runtime import DEVICE_PROVIDERS


@dataclass(frozen=True, kw_only=True)
class SR3Config:
    """``scale``: the upscaling factor (SR3 nets are scale-agnostic: needed unless the model's
    metadata gives a scale above 1; Janspiry's 16->128 models are 8); ``steps``: sampling
    steps, the schedule respaced to that many (None: the full schedule, as Janspiry samples);
    ``seed``: see the module docstring; ``n_timestep``/``linear_start``/``linear_end``: a linear
    schedule instead of the model's (missing ones from Janspiry's default);
    ``device``/``providers``/``threads``: as for the onnxruntime backend."""

    scale: int | None = None
    steps: int | None = None
    seed: int = 0
    n_timestep: int | None = None
    linear_start: float | None = None
    linear_end: float | None = None
    device: str = "cpu"
    providers: tuple[str, ...] = ()
    threads: int = 0

    def __post_init__(self) -> None:
        if self.device not in DEVICE_PROVIDERS:
            raise EdgesrError(f"sr3: unknown device {self.device!r}; "
                              f"choose from {', '.join(DEVICE_PROVIDERS)}")
        if (self.scale is not None and self.scale < 1) or self.threads < 0:
            raise EdgesrError("sr3: need scale >= 1 and threads >= 0")
        if self.steps is not None and self.steps < 2:
            raise EdgesrError(f"sr3: need steps >= 2, got {self.steps}")

    @property
    def linear_schedule(self) -> dict | None:
        """The linear schedule asked for, or None to use the model's."""
        given = {k: getattr(self, k) for k in JANSPIRY_SCHEDULE if getattr(self, k) is not None}
        return {**JANSPIRY_SCHEDULE, **given} if given else None


class SR3Runtime(Runtime):
    """Runs an exported SR3 denoiser's sampling loop tile by tile (batch of 1 each)."""

    name = "sr3"

    def __init__(self, model_path: str | Path, config: SR3Config | None = None):
        super().__init__()
        self.model_path = Path(model_path)
        self.config = config or SR3Config()
        self._session: ort.InferenceSession | None = None
        self._coefficients: dict[str, torch.Tensor] = {}
        self._scale = 1

    def activate_impl(self) -> RuntimeInfo:
        path, config = self.model_path, self.config
        if path.suffix != ".onnx" or not path.is_file():
            raise CheckpointError(f"{path}: the sr3 backend runs an SR3 denoiser's .onnx export "
                                  "(or its .pth/.safetensors checkpoint, exported on the fly)")
        session = open_session(path, self.name, device=config.device,
                               providers=config.providers, threads=config.threads)
        meta = decode_metadata(session.get_modelmeta().custom_metadata_map, str(path))
        if meta.get("role") != "denoiser" or meta.get("arch") != "SR3":
            raise CheckpointError(f"{path}: not an SR3 denoiser exported by edgesr export "
                                  f"(role {meta.get('role')!r}, arch {meta.get('arch')!r})")
        channels = int(meta["out_channels"])
        if int(meta["in_channels"]) != 2 * channels:
            raise CheckpointError(f"{path}: an SR3 denoiser conditioned on the image takes "
                                  f"{2 * channels} input channels, not {meta['in_channels']}")
        self._scale = config.scale or (int(meta["scale"]) if int(meta["scale"]) > 1 else 0)
        if not self._scale:
            raise EdgesrError("sr3: an SR3 model does not know its upscaling factor; pass "
                              "--scale N (e.g. 8 for a 16->128 model)")
        self._coefficients = self._schedule(meta)
        self._session = session
        multiple = int(meta.get("size_multiple", 1))
        return RuntimeInfo(scale=self._scale, in_channels=channels, out_channels=channels,
                           size_multiple=multiple // math.gcd(multiple, self._scale),
                           preferred_batch=1)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self._sample(tile) for tile in batch])

    def deactivate_impl(self) -> None:
        self._session = None
        self._coefficients = {}

    def _schedule(self, meta: dict) -> dict[str, torch.Tensor]:
        """The sampling coefficients of the (respaced) schedule, per the module docstring."""
        linear = self.config.linear_schedule
        if linear is not None:
            betas = linear_betas(**linear)
        elif "betas" in meta:
            betas = np.asarray(json.loads(meta["betas"]), np.float64)
        else:
            betas = linear_betas(**JANSPIRY_SCHEDULE)
        steps = self.config.steps
        try:
            if steps is not None and steps != len(betas):
                betas = respace_betas(betas, steps)
            return {k: torch.from_numpy(v) for k, v in sampling_coefficients(betas).items()}
        except ValueError as exc:
            raise EdgesrError(f"{self.model_path}: bad SR3 noise schedule: {exc}") from None

    def _sample(self, tile: np.ndarray) -> np.ndarray:
        """One [C, h, w] tile in [0, 1] -> [1, C, h*scale, w*scale] in [0, 1]."""
        c = self._coefficients
        generator = tile_generator(self.config.seed, tile)
        condition = torch.from_numpy(upsample(tile, self._scale)[None] * 2 - 1)
        img = torch.randn(condition.shape, generator=generator)
        for t in reversed(range(len(c["noise_level"]))):
            feed = {"x": torch.cat([condition, img], dim=1).numpy(),
                    "noise_level": c["noise_level"][t:t + 1].numpy()}
            noise = torch.from_numpy(self._session.run(None, feed)[0])
            x_recon = c["sqrt_recip_alphas_cumprod"][t] * img \
                - c["sqrt_recipm1_alphas_cumprod"][t] * noise
            x_recon = x_recon.clamp(-1.0, 1.0)
            img = c["posterior_mean_coef1"][t] * x_recon + c["posterior_mean_coef2"][t] * img
            if t > 0:
                z = torch.randn(img.shape, generator=generator)
                img = img + z * (0.5 * c["posterior_log_variance_clipped"][t]).exp()
        return np.clip(img.numpy() / 2 + 0.5, 0, 1).astype(np.float32)


def upsample(tile: np.ndarray, scale: int) -> np.ndarray:
    """[C, h, w] float32 in [0, 1] -> [C, h*scale, w*scale], PIL bicubic per channel, clipped."""
    _, height, width = tile.shape
    size = (width * scale, height * scale)
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize(
        size, Image.Resampling.BICUBIC)) for p in tile.astype(np.float32)]
    return np.clip(np.stack(planes), 0, 1).astype(np.float32)
