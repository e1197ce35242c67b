"""SRVGGNetCompact (Real-ESRGAN's realesr-animevideov3 and realesr-general-x4v3)."""

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


class SRVGGNetCompact(nn.Module):
    """A plain conv stack, pixel-shuffle upsampling and a nearest-neighbour residual."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ):
        super().__init__()
        if act_type not in ACTIVATIONS:
            raise ValueError(f"act_type must be one of {ACTIVATIONS}, got {act_type!r}")
        self.upscale = upscale
        self.body = nn.ModuleList([nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)])
        self.body.append(_activation(act_type, num_feat))
        for _ in range(num_conv):
            self.body.append(nn.Conv2d(num_feat, num_feat, 3, 1, 1))
            self.body.append(_activation(act_type, num_feat))
        self.body.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=float(self.upscale), mode="nearest")


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)
