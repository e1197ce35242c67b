"""PyTorch eager backend: the reference every other backend is compared with."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgesr.models import ModelDescriptor, load_model
from edgesr.runtimes.base import Runtime, RuntimeInfo


@dataclass(frozen=True, kw_only=True)
class TorchConfig:
    """``device``: a torch device string; ``threads``: intra-op threads (0: torch's default)."""

    device: str = "cpu"
    threads: int = 0
    preferred_batch: int = 1


class TorchRuntime(Runtime):
    """Runs a ModelDescriptor (or any model file edgesr can load) in PyTorch eager mode."""

    name = "torch"

    def __init__(self, model: str | Path | ModelDescriptor, config: TorchConfig | None = None):
        super().__init__()
        self.source = model
        self.config = config or TorchConfig()
        self.descriptor: ModelDescriptor | None = None

    def activate_impl(self) -> RuntimeInfo:
        desc = self.source if isinstance(self.source, ModelDescriptor) else load_model(self.source)
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        desc.model.to(self.config.device).eval()
        self.descriptor = desc
        return RuntimeInfo(scale=desc.scale, in_channels=desc.in_channels,
                           out_channels=desc.out_channels, size_multiple=desc.size_multiple,
                           preferred_batch=self.config.preferred_batch, precision="fp32",
                           device=self.config.device)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        assert self.descriptor is not None
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.config.device)
            return self.descriptor.model(x).float().cpu().numpy()

    def deactivate_impl(self) -> None:
        self.descriptor = None
