"""What edgesr knows about a loaded model: the module plus what the tiler and exporters need."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgesr.fsutil import sha256_file


@dataclass(frozen=True, kw_only=True)
class ModelDescriptor:
    """A PyTorch super-resolution model and its detected properties.

    ``size_multiple``: input height and width must be divisible by it (pixel-unshuffle models);
    the tiler pads to it. ``hyperparameters`` rebuild the module; ``source_sha256`` identifies
    the weights file it came from (None for in-memory models).
    """

    model: nn.Module
    architecture: str
    scale: int
    in_channels: int
    out_channels: int
    size_multiple: int = 1
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    source_sha256: str | None = None

    @property
    def name(self) -> str:
        """A short human-readable label, e.g. ``RRDBNet x4 (23 blocks)``."""
        hp = self.hyperparameters
        if "channel_mults" in hp:  # a diffusion denoiser: output at the input's size
            return (f"{self.architecture} denoiser ({len(hp['channel_mults'])} levels, "
                    f"{hp['inner_channel']} channels)")
        detail = ""
        if "num_block" in hp:
            detail = f" ({hp['num_block']} blocks)"
        elif "num_conv" in hp:
            detail = f" ({hp['num_conv']} convs)"
        return f"{self.architecture} x{self.scale}{detail}"

    def with_source(self, path: str | Path) -> "ModelDescriptor":
        """Return a copy that records the weights file it was loaded from and its sha256."""
        from dataclasses import replace

        return replace(self, source=str(path), source_sha256=sha256_file(path))


class OutputResize(nn.Module):
    """Runs a model at its native scale and resizes the output to a smaller final scale.

    The official ncnn animevideov3 x2/x3 models are the x4 network followed by a bicubic
    resize; this reproduces them in PyTorch.
    """

    def __init__(self, model: nn.Module, factor: float, mode: str = "bicubic"):
        super().__init__()
        self.model = model
        self.factor = factor
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return F.interpolate(out, scale_factor=self.factor, mode=self.mode, align_corners=False)
