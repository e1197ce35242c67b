"""PyTorch eager sessions for the samplers: each exported graph (``unet.onnx``,
``vae_decoder.onnx``, an SR3 denoiser ``.onnx``) opened as the PyTorch module its export was
traced from (``export.diffusion_sources``: the source the graph's metadata records, checked
against its sha256), so the same sampling loop runs diffusers' (or the SR3 checkpoint's) modules
eagerly at FP32: the reference ``edgesr bench`` compares a diffusion model's backends with.

A graph whose recorded source is missing, moved or changed is one clear line
(``CheckpointError``); the metadata is read from the ``.onnx`` (its weights are not).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.diffusion.sessions import SessionFactory, onnx_metadata
from edgesr.errors import EdgesrError


@dataclass(frozen=True, kw_only=True)
class TorchSessionOptions:
    """``threads``: torch's intra-op threads (0: torch's default); it runs on the CPU."""

    threads: int = 0

    @property
    def where(self) -> str:
        """The device it runs on, as the upscale line names it."""
        return "cpu"

    def check_engine(self, backend: str) -> None:
        if self.threads < 0:
            raise EdgesrError(f"{backend}: need threads >= 0")

    def sessions(self, backend: str) -> SessionFactory:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        loaded: dict = {}  # the sources this factory's sessions loaded: each loads once
        return lambda path: TorchSession(path, loaded)


class TorchSession:
    """A Session on graph ``path``'s PyTorch source module (``loaded``: see ``open_source``):
    ``run`` feeds the export spec's inputs by name, in ``forward`` order, under
    ``torch.inference_mode``."""

    precision: str | None = "fp32"

    def __init__(self, path: Path, loaded: dict | None = None) -> None:
        from edgesr.export.diffusion_sources import open_source

        self.path = Path(path)
        module, self.spec = open_source(self.path, loaded)
        self.module = module.eval().float()

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        missing = [name for name in self.spec.inputs if name not in inputs]
        if missing:
            raise EdgesrError(f"{self.path}: no input {', '.join(missing)} given")
        with torch.inference_mode():
            output = self.module(*(torch.from_numpy(np.ascontiguousarray(inputs[name]))
                                   for name in self.spec.inputs))
        return [output.numpy()]

    def metadata(self) -> dict[str, str]:
        return onnx_metadata(self.path)
