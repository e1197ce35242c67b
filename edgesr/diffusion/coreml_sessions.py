"""CoreML sessions for the samplers: the UNet and VAE decoder (SD x4) or the SR3 denoiser as ML
program packages, predicted by coremltools on macOS.

A package is written beside its ONNX graph by ``edgesr export ... --coreml fp16|fp32``
(``edgesr.export.diffusion_coreml``: traced from PyTorch, flexible latent sizes and batch
1-2): ``unet.mlpackage`` beside ``unet.onnx``. The session factory opens the package beside the
graph the sampler names, and reads the edgesr metadata from the package (written there from the
same fields as the ONNX file's). ``precision``: what the packages must have been converted at
(None: whatever they were); each session reports the package's. Elsewhere than macOS the
factory is refused with the reason (the packages can still be written and checked here).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.diffusion.sessions import SessionFactory
from edgesr.errors import BackendUnavailableError, CheckpointError, EdgesrError

PRECISIONS = ("fp16", "fp32")
COMPUTE_UNITS = ("all", "cpu", "cpu_gpu", "cpu_ne")
PACKAGE_SUFFIX = ".mlpackage"


def package_of(graph: Path) -> Path:
    """The package written beside ONNX graph ``graph``."""
    return graph.with_suffix(PACKAGE_SUFFIX)


@dataclass(frozen=True, kw_only=True)
class CoreMLSessionOptions:
    """``compute_units``: all, cpu, cpu_gpu or cpu_ne (Neural Engine); ``precision``: fp16 or
    fp32, what the packages must be (None: as converted)."""

    compute_units: str = "all"
    precision: str | None = None

    @property
    def where(self) -> str:
        """The device it runs on, as the upscale line names it."""
        return f"CoreML {self.compute_units}"

    def check_engine(self, backend: str) -> None:
        if self.compute_units not in COMPUTE_UNITS:
            raise EdgesrError(f"{backend}: compute_units must be one of "
                              f"{', '.join(COMPUTE_UNITS)}, not {self.compute_units!r}")
        if self.precision not in (None, *PRECISIONS):
            raise EdgesrError(f"{backend}: precision must be one of {', '.join(PRECISIONS)}, "
                              f"not {self.precision!r}")

    def sessions(self, backend: str) -> SessionFactory:
        from edgesr.runtimes.coreml_runtime import unavailable_reason

        reason = unavailable_reason()
        if reason:
            raise BackendUnavailableError(f"{backend}: {reason}")
        return lambda graph: open_package(backend, graph, self.compute_units, self.precision)


def open_package(backend: str, graph: Path, compute_units: str,
                 precision: str | None) -> "CoreMLSession":
    """The session of the package beside ``graph``; one clear line when it is missing or was
    converted at another precision."""
    from edgesr.export.diffusion_coreml import read_package_io

    package = package_of(graph)
    if not package.is_dir():
        raise CheckpointError(f"{graph.parent}: no {package.name} beside {graph.name}; write "
                              "it with edgesr export SOURCE -o OUTPUT --coreml fp16 (from the "
                              "diffusers folder or the SR3 checkpoint)")
    io = read_package_io(package)
    converted = io.metadata.get("edgesr.precision")
    if precision and converted != precision:
        raise EdgesrError(f"{backend}: {package} was converted at {converted}, not "
                          f"{precision}; re-export with --coreml {precision}")
    return CoreMLSession(package, io, compute_units)


class CoreMLSession:
    """A Session on an ML program package; inputs are cast to the types it declares."""

    def __init__(self, package: Path, io, compute_units: str) -> None:
        from edgesr.runtimes.coreml_runtime import COMPUTE_UNITS as UNITS
        from edgesr.runtimes.coreml_runtime import ct

        self.io = io
        self.precision = io.metadata.get("edgesr.precision")
        self.model = ct.models.MLModel(str(package), compute_units=UNITS[compute_units])
        self._dtypes = {name: np.int32 if kind == "int32" else np.float32
                        for name, (kind, _) in io.inputs.items()}

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        feed = {name: np.ascontiguousarray(inputs[name], self._dtypes[name])
                for name in self.io.inputs}
        result = self.model.predict(feed)
        return [np.asarray(result[name], np.float32) for name in self.io.outputs]

    def metadata(self) -> dict[str, str]:
        return {k: v for k, v in self.io.metadata.items() if k.startswith("edgesr.")}
