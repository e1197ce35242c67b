"""Stable Diffusion x4 upscaler backend: ``edgesr.diffusion.sd_upscaler``'s sampler behind the
runtime protocol, its UNet and VAE run by ONNX Runtime.

``infer`` takes low-resolution RGB tiles in [0, 1] and samples each (see the sampler's module
docstring for the loop, latent tiling and seeding).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.diffusion.sd_upscaler import SDSampling, SDUpscalerSampler, unavailable_reason
from edgesr.diffusion.sessions import onnxruntime_sessions
from edgesr.errors import EdgesrError
from edgesr.runtimes.base import Runtime, RuntimeInfo
from edgesr.runtimes.onnxruntime_runtime import DEVICE_PROVIDERS

__all__ = ["SDUpscalerConfig", "SDUpscalerRuntime", "unavailable_reason"]


@dataclass(frozen=True, kw_only=True)
class SDUpscalerConfig(SDSampling):
    """The sampling options of ``SDSampling``, and ``device``/``providers``/``threads`` as for
    the onnxruntime backend."""

    device: str = "cpu"
    providers: tuple[str, ...] = ()
    threads: int = 0

    def __post_init__(self) -> None:
        if self.device not in DEVICE_PROVIDERS:
            raise EdgesrError(f"sd-upscaler: unknown device {self.device!r}; "
                              f"choose from {', '.join(DEVICE_PROVIDERS)}")
        if self.threads < 0:
            raise EdgesrError("sd-upscaler: need threads >= 0")
        super().__post_init__()


class SDUpscalerRuntime(Runtime):
    """Runs an exported Stable Diffusion x4 upscaler folder tile by tile (batch of 1 each)."""

    name = "sd-upscaler"

    def __init__(self, model_path: str | Path, config: SDUpscalerConfig | None = None):
        super().__init__()
        self.folder = Path(model_path)
        self.config = config or SDUpscalerConfig()
        self.sampler: SDUpscalerSampler | None = None

    def activate_impl(self) -> RuntimeInfo:
        config = self.config
        sessions = onnxruntime_sessions(self.name, device=config.device,
                                        providers=config.providers, threads=config.threads)
        self.sampler = SDUpscalerSampler(self.folder, config, sessions)
        return RuntimeInfo(scale=self.sampler.scale, in_channels=3, out_channels=3,
                           size_multiple=self.sampler.size_multiple, preferred_batch=1)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        assert self.sampler is not None
        return np.concatenate([self.sampler.sample(tile) for tile in batch])

    def deactivate_impl(self) -> None:
        self.sampler = None
