"""SR3 backend: ``edgesr.diffusion.sr3``'s refinement loop behind the runtime protocol, its
denoiser run by ONNX Runtime.

``infer`` takes low-resolution RGB tiles in [0, 1] and samples each (see the sampler's module
docstring for the loop, the noise schedule and seeding).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.diffusion.sessions import onnxruntime_sessions
from edgesr.diffusion.sr3 import SR3Sampler, SR3Sampling
from edgesr.errors import EdgesrError
from edgesr.runtimes.base import Runtime, RuntimeInfo
from edgesr.runtimes.onnxruntime_runtime import DEVICE_PROVIDERS


@dataclass(frozen=True, kw_only=True)
class SR3Config(SR3Sampling):
    """The sampling options of ``SR3Sampling``, and ``device``/``providers``/``threads`` as
    for the onnxruntime backend."""

    device: str = "cpu"
    providers: tuple[str, ...] = ()
    threads: int = 0

    def __post_init__(self) -> None:
        if self.device not in DEVICE_PROVIDERS:
            raise EdgesrError(f"sr3: unknown device {self.device!r}; "
                              f"choose from {', '.join(DEVICE_PROVIDERS)}")
        if self.threads < 0:
            raise EdgesrError("sr3: need threads >= 0")
        super().__post_init__()


class SR3Runtime(Runtime):
    """Runs an exported SR3 denoiser's sampling loop tile by tile (batch of 1 each)."""

    name = "sr3"

    def __init__(self, model_path: str | Path, config: SR3Config | None = None):
        super().__init__()
        self.model_path = Path(model_path)
        self.config = config or SR3Config()
        self.sampler: SR3Sampler | None = None

    def activate_impl(self) -> RuntimeInfo:
        config = self.config
        sessions = onnxruntime_sessions(self.name, device=config.device,
                                        providers=config.providers, threads=config.threads)
        self.sampler = SR3Sampler(self.model_path, config, sessions)
        channels = self.sampler.channels
        return RuntimeInfo(scale=self.sampler.scale, in_channels=channels,
                           out_channels=channels, size_multiple=self.sampler.size_multiple,
                           preferred_batch=1)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        assert self.sampler is not None
        return np.concatenate([self.sampler.sample(tile) for tile in batch])

    def deactivate_impl(self) -> None:
        self.sampler = None
