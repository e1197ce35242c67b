"""Detect the architecture of a state_dict and build the matching model (as spandrel does).

Each architecture is one ``ArchSpec``: a key condition that recognises its state_dict and a
builder that reads every hyperparameter (scale, channels, depth) off the tensor shapes.
"""

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from edgesr.errors import UnsupportedArchitectureError, first_line
from edgesr.models.compact import SRVGGNetCompact
from edgesr.models.descriptor import ModelDescriptor
from edgesr.models.rrdbnet import RRDBNet
from edgesr.models.sr3 import SR3UNet, sr3_hyperparameters, strip_diffusion_wrapper

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class KeyCondition:
    """A predicate on the keys of a state_dict."""

    keys: tuple[str, ...]
    require_all: bool = True

    @classmethod
    def has_all(cls, *keys: str) -> "KeyCondition":
        return cls(keys, True)

    @classmethod
    def has_any(cls, *keys: str) -> "KeyCondition":
        return cls(keys, False)

    def __call__(self, state_dict: StateDict) -> bool:
        hits = (k in state_dict for k in self.keys)
        return all(hits) if self.require_all else any(hits)


@dataclass(frozen=True)
class ArchSpec:
    """One architecture. ``purpose`` (as spandrel's descriptor): "upscaler" for a single-pass
    model, "denoiser" for a diffusion denoiser, ``model(x, noise_level)`` -> noise at the
    input's size (scale 1), which ``edgesr upscale`` samples on its own backend (see
    ``edgesr.model_kinds``), never on torch or onnxruntime."""

    name: str
    condition: KeyCondition
    build: Callable[[StateDict], ModelDescriptor]
    purpose: str = "upscaler"


def _conv_out(state_dict: StateDict, key: str) -> int:
    return int(state_dict[key].shape[0])


def _build_rrdbnet(sd: StateDict) -> ModelDescriptor:
    num_feat = _conv_out(sd, "conv_first.weight")
    folded_in = int(sd["conv_first.weight"].shape[1])
    out_ch = _conv_out(sd, "conv_last.weight")
    block_ids = {int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.rdb1\.", k))}
    num_block = max(block_ids) + 1
    num_grow_ch = _conv_out(sd, "body.0.rdb1.conv1.weight")
    # basicsr folds the input by pixel-unshuffle for x2 (4x channels) and x1 (16x channels).
    fold_to_scale = {1: 4, 4: 2, 16: 1}
    fold, scale = 1, 4
    for f, s in fold_to_scale.items():
        if folded_in == out_ch * f:
            fold, scale = f, s
    in_ch = folded_in // fold
    hp = dict(num_in_ch=in_ch, num_out_ch=out_ch, scale=scale, num_feat=num_feat,
              num_block=num_block, num_grow_ch=num_grow_ch)
    model = RRDBNet(**hp)
    _load_strict(model, sd, "RRDBNet")
    return ModelDescriptor(model=model, architecture="RRDBNet", scale=scale, in_channels=in_ch,
                           out_channels=out_ch, size_multiple=4 // scale, hyperparameters=hp)


def _build_compact(sd: StateDict) -> ModelDescriptor:
    conv_ids = sorted(int(m.group(1)) for k in sd
                      if (m := re.fullmatch(r"body\.(\d+)\.weight", k)) and sd[k].ndim == 4)
    first, last = sd[f"body.{conv_ids[0]}.weight"], sd[f"body.{conv_ids[-1]}.weight"]
    in_ch, num_feat = int(first.shape[1]), int(first.shape[0])
    # The last conv emits out_ch * scale^2 channels; Real-ESRGAN's Compact models keep out == in.
    upscale = math.isqrt(int(last.shape[0]) // in_ch)
    if upscale * upscale * in_ch != last.shape[0]:
        raise UnsupportedArchitectureError(
            f"SRVGGNetCompact: last conv has {last.shape[0]} channels, not in_ch * scale^2")
    act_type = "prelu" if "body.1.weight" in sd else "leakyrelu"
    hp = dict(num_in_ch=in_ch, num_out_ch=in_ch, num_feat=num_feat,
              num_conv=len(conv_ids) - 2, upscale=upscale, act_type=act_type)
    model = SRVGGNetCompact(**hp)
    _load_strict(model, sd, "SRVGGNetCompact")
    return ModelDescriptor(model=model, architecture="SRVGGNetCompact", scale=upscale,
                           in_channels=in_ch, out_channels=in_ch, hyperparameters=hp)


def _build_sr3(sd: StateDict) -> ModelDescriptor:
    """SR3UNet from the shapes; a ``GaussianDiffusion`` ``betas`` buffer becomes ``model.betas``."""
    sd = dict(sd)
    betas = sd.pop("betas", None)
    hp = sr3_hyperparameters(sd)
    model = SR3UNet(**hp)
    _load_strict(model, sd, "SR3")
    if betas is not None:
        model.betas = betas.detach().reshape(-1).double()
    return ModelDescriptor(model=model, architecture="SR3", scale=1,
                           in_channels=hp["in_channel"], out_channels=hp["out_channel"],
                           size_multiple=model.size_multiple, hyperparameters=hp)


def _load_strict(model: torch.nn.Module, sd: StateDict, arch: str) -> None:
    try:
        model.load_state_dict(dict(sd), strict=True)
    except RuntimeError as exc:
        raise UnsupportedArchitectureError(
            f"state_dict looks like {arch} but does not fit it: {first_line(exc)}") from None


ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec("SR3", KeyCondition.has_all("noise_level_mlp.1.weight", "downs.0.weight",
                                         "final_conv.block.3.weight"), _build_sr3,
             purpose="denoiser"),
    ArchSpec(
        "RRDBNet",
        KeyCondition.has_all("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight",
                             "conv_up1.weight", "conv_up2.weight", "conv_hr.weight",
                             "conv_last.weight"),
        _build_rrdbnet,
    ),
    ArchSpec("SRVGGNetCompact", KeyCondition.has_all("body.0.weight", "body.0.bias"),
             _build_compact),
)


def purpose_of(architecture: str) -> str:
    """The purpose of architecture ``architecture`` (see ``ArchSpec``)."""
    return next((s.purpose for s in ARCHITECTURES if s.name == architecture), "upscaler")


def normalize_keys(state_dict: StateDict) -> dict[str, torch.Tensor]:
    """Strip DataParallel prefixes and SR3's diffusion wrapper (``denoise_fn.``), and rename
    old-style ESRGAN keys to basicsr names."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if any(k.startswith("denoise_fn.") for k in sd):
        sd = strip_diffusion_wrapper(sd)
    if "model.0.weight" in sd and "model.1.sub.0.RDB1.conv1.0.weight" in sd:
        sd = _rename_old_esrgan(sd)
    return sd


def _rename_old_esrgan(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    block_ids = {int(m.group(1)) for k in sd if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))}
    n_blocks = max(block_ids) + 1
    fixed = {"model.0": "conv_first", f"model.1.sub.{n_blocks}": "conv_body", "model.3": "conv_up1",
             "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    out = {}
    for key, value in sd.items():
        prefix, _, param = key.rpartition(".")
        if m := re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0", prefix):
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{param}"] = value
        elif prefix in fixed:
            out[f"{fixed[prefix]}.{param}"] = value
        else:
            raise UnsupportedArchitectureError(
                f"old-style ESRGAN checkpoint with unexpected key {key!r} "
                "(only the standard 4x layout is supported)")
    return out


def detect_architecture(state_dict: StateDict) -> ArchSpec:
    """Return the ArchSpec whose key condition matches ``state_dict``."""
    sd = normalize_keys(state_dict)
    for spec in ARCHITECTURES:
        if spec.condition(sd):
            return spec
    sample = ", ".join(list(sd)[:4]) or "no keys"
    raise UnsupportedArchitectureError(f"unknown architecture (first keys: {sample})")


def model_from_state_dict(state_dict: StateDict) -> ModelDescriptor:
    """Detect the architecture of ``state_dict`` and return the loaded model, in eval mode."""
    sd = normalize_keys(state_dict)
    descriptor = detect_architecture(sd).build(sd)
    descriptor.model.eval().requires_grad_(False)
    return descriptor
