"""Stable Diffusion x4 upscaler (diffusers ``StableDiffusionUpscalePipeline`` folder) to ONNX.

The folder holds ``unet/`` (a UNet2DConditionModel whose input is the 4 latent channels plus
the 3 channels of the low-resolution image, with the noise level as class label) and ``vae/``
(an AutoencoderKL whose decoder turns latents at the low-resolution size into the image x4),
each a ``config.json`` and ``diffusion_pytorch_model.safetensors``, plus ``model_index.json``.
``export_sd_upscaler`` writes ``unet.onnx`` and ``vae_decoder.onnx`` into a folder, each checked
against PyTorch, plus what sampling needs beside them: copies of ``model_index.json`` and the
``scheduler/`` and ``low_res_scheduler/`` configs, and ``prompt_embeds.npy``. The text encoder
and tokenizer are not exported: when the folder has them and transformers is installed, the CLIP
embeddings of the negative prompt ("") and the prompt are computed once, as the pipeline's
``encode_prompt`` does, and saved as [2, sequence, dim] (negative, positive).

diffusers is optional (``pip install 'edgesr[diffusion]'``) and imported only here, lazily.
"""

import importlib.util
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgesr.errors import CheckpointError, ExportError, first_line
from edgesr.export.diffusion_export import (
    EXTERNAL_DATA_BYTES,
    Dims,
    GraphReport,
    GraphSpec,
    export_graphs,
    image_dims,
)
from edgesr.export.specs import MIN_OPSET
from edgesr.fsutil import sha256_file

ARCHITECTURE = "StableDiffusionUpscaler"
PIPELINE_CLASS = "StableDiffusionUpscalePipeline"
IMAGE_CHANNELS = 3
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
UNET_INPUTS = ("sample", "timestep", "encoder_hidden_states", "class_labels")
#: Source files copied as they are into the export folder: the sampling loop's configs.
CONFIG_FILES = ("model_index.json", "scheduler/scheduler_config.json",
                "low_res_scheduler/scheduler_config.json")
EMBEDDINGS_FILE = "prompt_embeds.npy"


@dataclass(frozen=True)
class SDUpscaler:
    """The UNet and VAE of an x4 upscaler folder, with what the ONNX metadata records."""

    folder: Path
    unet: nn.Module
    vae: nn.Module
    unet_sha256: str | None
    vae_sha256: str | None
    max_noise_level: int | None

    @property
    def scale(self) -> int:
        """The upscale factor: the VAE decoder's, 2 ** (its up blocks - 1)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)


class _UNetGraph(nn.Module):
    """``(sample, timestep, encoder_hidden_states, class_labels)`` -> predicted noise."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, class_labels) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states, class_labels=class_labels,
                         return_dict=False)[0]


class _VaeDecoderGraph(nn.Module):
    """``latent_sample`` (latents already divided by the VAE scaling factor) -> image."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent_sample, return_dict=False)[0]


def load_sd_upscaler(folder: str | Path) -> SDUpscaler:
    """Load the UNet and VAE of an x4 upscaler folder with diffusers, on the CPU, in float32.

    Raises CheckpointError for a folder that is not one, ExportError without diffusers.
    """
    folder = Path(folder)
    for part in ("unet", "vae"):
        if not (folder / part / "config.json").is_file():
            raise CheckpointError(f"{folder}: not a Stable Diffusion x4 upscaler folder "
                                  f"(no {part}/config.json)")
    index = _model_index(folder)
    try:
        from diffusers import AutoencoderKL, UNet2DConditionModel
    except ImportError:
        raise ExportError("Stable Diffusion export needs diffusers: "
                          "pip install 'edgesr[diffusion]'") from None
    unet = _load(UNet2DConditionModel, folder / "unet")
    vae = _load(AutoencoderKL, folder / "vae")
    latent = vae.config.latent_channels
    if unet.config.in_channels != latent + IMAGE_CHANNELS or unet.config.out_channels != latent:
        raise CheckpointError(f"{folder}: the UNet maps {unet.config.in_channels} to "
                              f"{unet.config.out_channels} channels, not {latent} latent + "
                              f"{IMAGE_CHANNELS} image channels to {latent}: not an x4 upscaler")
    if unet.class_embedding is None:
        raise CheckpointError(f"{folder}: the UNet has no class embedding for the noise level: "
                              "not an x4 upscaler")
    return SDUpscaler(folder=folder, unet=unet, vae=vae,
                      unet_sha256=weights_sha256(folder / "unet"),
                      vae_sha256=weights_sha256(folder / "vae"),
                      max_noise_level=index.get("max_noise_level"))


def sd_upscaler_graphs(model: SDUpscaler, opset: int = MIN_OPSET
                       ) -> list[tuple[nn.Module, GraphSpec]]:
    """(module, GraphSpec) of ``unet.onnx`` and ``vae_decoder.onnx``."""
    unet, vae = model.unet.config, model.vae.config
    shared = {"arch": ARCHITECTURE, "scale": model.scale, "latent_channels": model.latent_channels,
              "vae_scaling_factor": vae.scaling_factor, "source": str(model.folder.resolve())}
    labels = model.max_noise_level or unet.num_class_embeds - 1

    def unet_sample(dims: Dims, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        b = dims["batch"]
        return (torch.randn(b, unet.in_channels, dims["height"], dims["width"], generator=gen),
                torch.randint(0, 1000, (b,), generator=gen).float(),
                torch.randn(b, dims["sequence"], unet.cross_attention_dim, generator=gen),
                torch.randint(0, labels + 1, (b,), generator=gen))

    def vae_sample(dims: Dims, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        shape = (dims["batch"], model.latent_channels, dims["height"], dims["width"])
        return (torch.randn(*shape, generator=gen) / vae.scaling_factor,)

    multiple = 2 ** (len(unet.block_out_channels) - 1)
    image = {0: "batch", 2: "height", 3: "width"}
    trace, parity = image_dims(multiple, sequence=7)
    unet_spec = GraphSpec(
        file="unet.onnx", inputs=UNET_INPUTS, output="out_sample",
        dynamic_axes={"sample": image, "timestep": {0: "batch"},
                      "encoder_hidden_states": {0: "batch", 1: "sequence"},
                      "class_labels": {0: "batch"}, "out_sample": image},
        sample=unet_sample, trace_dims=trace, parity_dims=parity, size_multiple=multiple,
        opset=opset,
        metadata={**shared, "role": "unet", "in_channels": unet.in_channels,
                  "out_channels": unet.out_channels, "source_sha256": model.unet_sha256,
                  "hyperparameters": {**_public(unet), "max_noise_level": model.max_noise_level}})
    trace, parity = image_dims(1)
    vae_spec = GraphSpec(
        file="vae_decoder.onnx", inputs=("latent_sample",), output="sample",
        dynamic_axes={"latent_sample": image,
                      "sample": {0: "batch", 2: "out_height", 3: "out_width"}},
        sample=vae_sample, trace_dims=trace, parity_dims=parity, peak=2.0, opset=opset,
        metadata={**shared, "role": "vae_decoder", "in_channels": model.latent_channels,
                  "out_channels": vae.out_channels, "source_sha256": model.vae_sha256,
                  "hyperparameters": _public(vae)})
    return [(_UNetGraph(model.unet), unet_spec), (_VaeDecoderGraph(model.vae), vae_spec)]


def export_sd_upscaler(folder: str | Path, output_dir: str | Path, *, prompt: str = "",
                       opset: int = MIN_OPSET,
                       external_data_bytes: int = EXTERNAL_DATA_BYTES) -> list[GraphReport]:
    """Export the x4 upscaler in ``folder`` to ``unet.onnx`` and ``vae_decoder.onnx`` in
    ``output_dir``, each checked against PyTorch at a size other than the trace size.

    unet.onnx: ``sample`` [B, 7, H, W] (latents, then the low-res image), ``timestep`` [B]
    float, ``encoder_hidden_states`` [B, seq, dim], ``class_labels`` [B] int64 (the noise
    level) -> ``out_sample`` [B, 4, H, W]; H and W multiples of its ``size_multiple``.
    vae_decoder.onnx: ``latent_sample`` [B, 4, h, w], latents divided by the
    ``vae_scaling_factor`` -> ``sample`` [B, 3, 4h, 4w] in [-1, 1]. The text encoder is not
    exported; ``prompt``'s embeddings are saved when the folder has ``text_encoder/`` and
    ``tokenizer/`` and transformers is installed (``prompt_embeddings``), and the sampling
    configs copied; nothing is written unless both graphs pass, and the configs and embeddings
    move in with them.
    """
    model = load_sd_upscaler(folder)
    extras: dict[str, bytes | None] = {
        name: (model.folder / name).read_bytes() for name in CONFIG_FILES
        if (model.folder / name).is_file()}
    embeds = prompt_embeddings(model.folder, prompt, model.unet.config.cross_attention_dim)
    extras[EMBEDDINGS_FILE] = None  # a stale prompt's embeddings go
    if embeds is not None:
        buffer = io.BytesIO()
        np.save(buffer, embeds)
        extras[EMBEDDINGS_FILE] = buffer.getvalue()
    return export_graphs(sd_upscaler_graphs(model, opset), output_dir, folder=True,
                         external_data_bytes=external_data_bytes, extra_files=extras,
                         release_weights=True)


def prompt_embeddings(folder: str | Path, prompt: str = "",
                      dim: int | None = None) -> np.ndarray | None:
    """[2, sequence, dim] float32 CLIP embeddings of "" and ``prompt`` (negative, positive) from
    the folder's ``text_encoder/`` and ``tokenizer/``, as diffusers' ``encode_prompt`` computes
    them; None when the folder lacks either or transformers is not installed."""
    folder = Path(folder)
    if not ((folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir()
            and importlib.util.find_spec("transformers")):
        return None
    from transformers import AutoTokenizer, CLIPTextModel

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"),
                                                  local_files_only=True)
        encoder = CLIPTextModel.from_pretrained(str(folder / "text_encoder"),
                                                local_files_only=True,
                                                torch_dtype=torch.float32).eval()
    except Exception as exc:  # transformers raises OSError, ValueError, ...
        raise CheckpointError(f"{folder}: cannot load the text encoder or tokenizer "
                              f"({first_line(exc)})") from None
    tokens = tokenizer(["", prompt], padding="max_length", max_length=tokenizer.model_max_length,
                       truncation=True, return_tensors="pt")
    mask = tokens.attention_mask if getattr(encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        embeds = encoder(tokens.input_ids, attention_mask=mask)[0].float().numpy()
    if dim is not None and embeds.shape[2] != dim:
        raise CheckpointError(f"{folder}: the text encoder gives {embeds.shape[2]}-dim "
                              f"embeddings, the UNet takes {dim}")
    return embeds


def _model_index(folder: Path) -> dict[str, Any]:
    path = folder / "model_index.json"
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable model index ({first_line(exc)})") from None
    if not isinstance(index, dict) or index.get("_class_name", PIPELINE_CLASS) != PIPELINE_CLASS:
        found = index.get("_class_name") if isinstance(index, dict) else type(index).__name__
        raise CheckpointError(f"{folder}: a {found} folder, not {PIPELINE_CLASS}")
    return index


def _load(cls: type, path: Path) -> nn.Module:
    try:
        model = cls.from_pretrained(str(path), local_files_only=True, torch_dtype=torch.float32,
                                    low_cpu_mem_usage=importlib.util.find_spec("accelerate")
                                    is not None)
    except Exception as exc:  # diffusers raises OSError, ValueError, RuntimeError, ...
        raise CheckpointError(f"{path}: cannot load {cls.__name__} ({first_line(exc)})") from None
    return model.eval().requires_grad_(False)


def weights_sha256(folder: Path) -> str | None:
    """sha256 of the weights file diffusers loads (None for sharded weights)."""
    return next((sha256_file(folder / f) for f in WEIGHT_FILES if (folder / f).is_file()), None)


def _public(config: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}
