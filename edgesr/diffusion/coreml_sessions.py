"""CoreML sessions for the samplers: the UNet and VAE decoder (SD x4) or the SR3 denoiser as ML
program packages, predicted by coremltools on macOS.

Packages are traced from PyTorch (``edgesr.export.diffusion_coreml``: flexible latent sizes
and batch 1-2), written either beside the ONNX graph by ``edgesr export ... --coreml fp16|fp32``
(``unet.mlpackage`` beside ``unet.onnx``) or into the engine cache, keyed by the graph, by
``edgesr build -b sd-upscaler-coreml`` / ``sr3-coreml`` (this module is those backends'
``engine_cache.Builder``: it traces the PyTorch source the graph's export recorded). The session
factory opens the package beside the graph the sampler names, else the engine cache's (built on
a miss while the source is there), and reads the edgesr metadata from the package (written
there from the same fields as the ONNX file's). ``precision``: what the packages must have been
converted at (None: whatever a package beside was; fp16 from the cache); each session reports
the package's. Elsewhere than macOS the factory is refused with the reason (the packages can
still be written and checked here).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.diffusion.sessions import SessionFactory
from edgesr.errors import BackendUnavailableError, CheckpointError, EdgesrError, first_line

PRECISIONS = ("fp16", "fp32")
#: What an engine-cache package is converted at when the session options name no precision.
DEFAULT_PRECISION = "fp16"
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

    def build_options(self):
        """What its sessions build into the engine cache (``edgesr build`` builds the same)."""
        from edgesr.runtimes.engine_cache import BuildOptions

        return BuildOptions(precision=self.precision or DEFAULT_PRECISION)


def open_package(backend: str, graph: Path, compute_units: str,
                 precision: str | None) -> "CoreMLSession":
    """The session of ``graph``'s package (``package_for``); one clear line when it was
    converted at another precision."""
    from edgesr.export.diffusion_coreml import read_package_io

    package = package_for(backend, graph, precision)
    io = read_package_io(package)
    converted = io.metadata.get("edgesr.precision")
    if precision and converted != precision:
        raise EdgesrError(f"{backend}: {package} was converted at {converted}, not "
                          f"{precision}; re-export with --coreml {precision}")
    return CoreMLSession(package, io, compute_units)


def package_for(backend: str, graph: Path, precision: str | None, cache=None) -> Path:
    """The package a session opens for ``graph``: the one beside it, else the engine cache's
    (built on a miss from the PyTorch source the graph's export recorded)."""
    from edgesr.runtimes.engine_cache import build_engine

    beside = package_of(graph)
    if beside.is_dir():
        return beside
    options = CoreMLSessionOptions(precision=precision).build_options()
    return build_engine(backend, graph, options, cache=cache).artifact


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


# This module is the CoreML sampler backends' ``engine_cache.Builder``.
def identity(options) -> tuple[str, str, str]:
    """(version, device, profile) of a package build: coremltools and the PyTorch that traces;
    any Apple device; batch 1-2, latent sides up to ``MAX_LATENT``."""
    import torch

    from edgesr.export.diffusion_coreml import MAX_BATCH, MAX_LATENT, _ct

    return (f"coremltools {_ct().__version__}, torch {torch.__version__}", "any",
            f"b1-{MAX_BATCH}_upto{MAX_LATENT}")


def build(source: Path, target: Path, options) -> None:
    """Trace the package of exported graph ``source`` from its PyTorch source, at ``target``."""
    from edgesr.export.diffusion_coreml import convert_from_source

    if options.precision not in PRECISIONS:
        raise EdgesrError(f"CoreML diffusion packages are {' or '.join(PRECISIONS)}, not "
                          f"{options.precision}")
    try:
        convert_from_source(source, target, precision=options.precision)
    except CheckpointError as exc:
        raise CheckpointError(f"no {package_of(source).name} beside {source.name} and none can "
                              f"be traced: {first_line(exc)}; write it with edgesr export SOURCE "
                              f"-o OUTPUT --coreml {options.precision} (from the diffusers folder "
                              "or the SR3 checkpoint)") from None
