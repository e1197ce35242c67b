"""Stable Diffusion x4 upscaler sampler: the whole sampling loop of an ``edgesr export`` folder.

The folder holds ``unet.onnx`` and ``vae_decoder.onnx`` (opened by the session factory it is
given, see ``sessions``; the sd-upscaler backend gives ONNX Runtime's), the diffusers
scheduler configs ``scheduler/`` and ``low_res_scheduler/`` and, unless the config names a
``prompt_embeds`` file, ``prompt_embeds.npy``: [2, sequence, dim], the CLIP embeddings of the
negative (unconditional) and the positive prompt. ``infer`` takes low-resolution RGB tiles in
[0, 1] and samples each exactly as diffusers' ``StableDiffusionUpscalePipeline.__call__`` does
(eta 0): noise-augment the image at ``noise_level`` with the low-res DDPM scheduler, start from
``randn * init_noise_sigma``, run the UNet on latents + noisy image with classifier-free guidance,
step the saved scheduler, and decode ``latents / vae_scaling_factor`` with the VAE.

Latent tiling (``latent_tile`` > 0, MultiDiffusion-style): on a tile larger than
``latent_tile``, each step runs the UNet on overlapping latent windows (with the same windows of
the noisy image; see ``latent_tiling``), blends their noise predictions with a feather window,
and steps the scheduler once on the whole latent; the VAE decodes the same windows, blended at
x4. So the whole tile is one sample (no seams where independently sampled tiles disagree) while
neither network sees more than a window. Use it with pixel tiling off (``--tile 0``).

Seeding: each tile gets its own ``torch.Generator`` (``seeding.tile_generator``) and
draws from it in diffusers' order (image noise, then latents, then any scheduler noise). So the
same seed gives the same image whatever the batch, the tile order or the other images of a
folder run, and diffusers given that generator matches.

diffusers (``pip install 'edgesr[diffusion]'``) is imported when a folder is loaded, for its
schedulers.
"""

import importlib.util
import inspect
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgesr.diffusion.latent_tiling import blend_windows, plan_windows
from edgesr.diffusion.seeding import tile_generator
from edgesr.diffusion.sessions import SessionFactory
from edgesr.errors import BackendUnavailableError, CheckpointError, EdgesrError
from edgesr.export.specs import decode_metadata
from edgesr.model_kinds import SD_GRAPHS as GRAPHS

SCHEDULERS = ("scheduler", "low_res_scheduler")
EMBEDDINGS_FILE = "prompt_embeds.npy"
DEFAULT_MAX_NOISE_LEVEL = 350  # diffusers' StableDiffusionUpscalePipeline default


@dataclass(frozen=True, kw_only=True)
class SDSampling:
    """``steps``: scheduler steps (diffusers defaults to 75; 20 takes about a quarter of the
    CPU time; the quality cost of fewer steps is not measured by edgesr); ``guidance_scale``:
    classifier-free guidance, off at <= 1 (diffusers' 9.0; when the prompt and negative
    embeddings are equal, guidance cannot change the result and one UNet pass per step is run
    instead of two); ``noise_level``: noise
    added to the low-res image, 0 to the model's max (diffusers' 20); ``seed``: see the module
    docstring; ``prompt_embeds``: a .npy [2, sequence, dim] (negative, positive) used instead
    of the folder's; ``latent_tile``: latent window size (= low-res pixels), a multiple of the
    UNet's size multiple, 0 = off (the whole tile per UNet and VAE call); ``latent_overlap``:
    the least overlap of neighbouring windows (see the module docstring)."""

    steps: int = 20
    guidance_scale: float = 9.0
    noise_level: int = 20
    seed: int = 0
    prompt_embeds: str | None = None
    latent_tile: int = 0
    latent_overlap: int = 16

    def __post_init__(self) -> None:
        if self.steps < 1 or self.noise_level < 0:
            raise EdgesrError("sd-upscaler: need steps >= 1 and noise_level >= 0")
        if (self.latent_tile < 0 or self.latent_overlap < 0
                or 0 < self.latent_tile <= self.latent_overlap):
            raise EdgesrError("sd-upscaler: need latent_tile >= 0 and 0 <= latent_overlap < "
                              f"latent_tile, got {self.latent_tile} and {self.latent_overlap}")


def unavailable_reason() -> str | None:
    """Why this sampler cannot run here (for ``edgesr backends``), or None."""
    if importlib.util.find_spec("diffusers") is None:
        return "needs diffusers for its schedulers: pip install 'edgesr[diffusion]'"
    return None


class SDUpscalerSampler:
    """A loaded Stable Diffusion x4 export folder; ``sample`` upscales one tile x ``scale``."""

    def __init__(self, folder: str | Path, sampling: SDSampling, sessions: SessionFactory):
        folder = self.folder = Path(folder)
        self.sampling = sampling
        missing = [f for f in GRAPHS if not (folder / f).is_file()]
        if missing:
            raise CheckpointError(f"{folder}: not a Stable Diffusion x4 export folder "
                                  f"({', '.join(missing)} missing); write one with edgesr export")
        self.schedulers = {name: _scheduler(folder, name) for name in SCHEDULERS}
        self.unet, self.vae = (sessions(folder / f) for f in GRAPHS)
        meta = decode_metadata(self.unet.metadata(), str(folder / GRAPHS[0]))
        hyper = meta.get("hyperparameters", {})
        max_noise = hyper.get("max_noise_level") or DEFAULT_MAX_NOISE_LEVEL
        if sampling.noise_level > max_noise:
            raise EdgesrError(f"sd-upscaler: noise_level {sampling.noise_level} is past this "
                              f"model's max_noise_level {max_noise}")
        self.embeds = _embeddings(folder, sampling.prompt_embeds,
                                  hyper.get("cross_attention_dim"))
        self.vae_scaling = float(meta["vae_scaling_factor"])
        self.latent_channels = int(meta["latent_channels"])
        self.scale = int(meta["scale"])
        self.size_multiple = int(meta.get("size_multiple", 1))
        if sampling.latent_tile % self.size_multiple:
            raise EdgesrError(f"sd-upscaler: latent_tile {sampling.latent_tile} must be a "
                              f"multiple of this UNet's size multiple {self.size_multiple}")

    def sample(self, tile: np.ndarray) -> np.ndarray:
        """One [3, H, W] tile in [0, 1] -> [1, 3, 4H, 4W] in [0, 1], as diffusers samples it."""
        config, scheduler = self.sampling, self.schedulers["scheduler"]
        generator = tile_generator(config.seed, tile)
        image = torch.from_numpy(tile[None] * 2 - 1)
        noise_level = torch.tensor([config.noise_level], dtype=torch.long)
        noise = torch.randn(image.shape, generator=generator)
        image = self.schedulers["low_res_scheduler"].add_noise(image, noise, noise_level)
        embeds = self.embeds
        guided = config.guidance_scale > 1 and not np.array_equal(embeds[0], embeds[1])
        embeds = embeds if guided else embeds[1:]
        copies = len(embeds)
        image = torch.cat([image] * copies)
        labels = noise_level.repeat(copies).numpy()
        scheduler.set_timesteps(config.steps)
        shape = (1, self.latent_channels, *tile.shape[1:])
        latents = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
        step_kwargs = _step_kwargs(scheduler, generator)
        windows = plan_windows(*tile.shape[1:], config.latent_tile, config.latent_overlap)

        def unet(t: float, sample: np.ndarray, count: int) -> np.ndarray:
            feed = {"sample": sample, "timestep": np.full(count * copies, t, np.float32),
                    "encoder_hidden_states": np.tile(embeds, (count, 1, 1)),
                    "class_labels": np.tile(labels, count)}
            return self.unet.run(feed)[0]

        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([latents] * copies), t)
            sample = torch.cat([model_input, image], dim=1).numpy()
            noise_pred = torch.from_numpy(blend_windows(partial(unet, float(t)), sample,
                                                        windows, 1))
            if guided:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + config.guidance_scale * (cond - uncond)
            latents = scheduler.step(noise_pred, t, latents, **step_kwargs,
                                     return_dict=False)[0]
        latent_sample = (latents / self.vae_scaling).numpy().astype(np.float32)
        decoded = blend_windows(lambda s, _: self.vae.run({"latent_sample": s})[0],
                                latent_sample, windows, self.scale)
        return np.clip(decoded / 2 + 0.5, 0, 1).astype(np.float32)


def _step_kwargs(scheduler: Any, generator: torch.Generator) -> dict[str, Any]:
    """eta 0 and the generator, for the schedulers whose ``step`` takes them (as diffusers)."""
    accepted = inspect.signature(scheduler.step).parameters
    return {k: v for k, v in (("eta", 0.0), ("generator", generator)) if k in accepted}


def _scheduler(folder: Path, name: str) -> Any:
    """The diffusers scheduler saved in ``folder/name/scheduler_config.json``."""
    path = folder / name / "scheduler_config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: {name}/scheduler_config.json missing; re-export the "
                              "folder with edgesr export from a diffusers folder that has it")
    try:
        config = json.loads(path.read_text())
        class_name = config["_class_name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a diffusers scheduler config ({exc})") from None
    try:
        import diffusers
    except ImportError:
        raise BackendUnavailableError("sd-upscaler needs diffusers for its schedulers: "
                                      "pip install 'edgesr[diffusion]'") from None
    cls = getattr(diffusers, class_name, None)
    if cls is None or not issubclass(cls, diffusers.SchedulerMixin):
        raise CheckpointError(f"{path}: {class_name!r} is not a diffusers scheduler")
    return cls.from_config(config)


def _embeddings(folder: Path, override: str | None, dim: int | None) -> np.ndarray:
    """[2, sequence, dim] float32 (negative, positive) from ``override`` or the folder."""
    path = Path(override) if override else folder / EMBEDDINGS_FILE
    if not path.is_file():
        raise EdgesrError(f"{folder}: no prompt embeddings ({EMBEDDINGS_FILE}); re-export with "
                          "edgesr export from a folder with text_encoder/ and tokenizer/ "
                          "(needs transformers), or pass --prompt-embeds FILE.npy")
    try:
        embeds = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EdgesrError(f"{path}: not a readable .npy file ({exc})") from None
    if embeds.ndim != 3 or embeds.shape[0] != 2 or (dim and embeds.shape[2] != dim):
        raise EdgesrError(f"{path}: prompt embeddings must be [2, sequence, {dim or 'dim'}] "
                          f"(negative, positive), got {list(embeds.shape)}")
    return np.ascontiguousarray(embeds, dtype=np.float32)
