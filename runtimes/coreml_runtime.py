"""CoreML backend: runs an edgesr ``.mlpackage`` with coremltools on macOS.

Given a checkpoint instead of a package, it converts it first through the engine cache
(``coreml_convert``). Elsewhere, activation raises BackendUnavailableError: coremltools can
convert and inspect packages on Linux but only macOS can run them.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.errors import BackendUnavailableError, EdgesrError
from edgesr.runtimes.base import Runtime, RuntimeInfo
from edgesr.runtimes.coreml_convert import INPUT_NAME, OUTPUT_NAME, PRECISIONS, ct, read_spec

COMPUTE_UNITS = {"all": ct.ComputeUnit.ALL, "cpu": ct.ComputeUnit.CPU_ONLY,
                 "cpu_gpu": ct.ComputeUnit.CPU_AND_GPU, "cpu_ne": ct.ComputeUnit.CPU_AND_NE}


def unavailable_reason() -> str | None:
    """Why CoreML cannot predict here, or None when it can."""
    if sys.platform != "darwin":
        return f"CoreML prediction needs macOS (this is {sys.platform}); conversion works here"
    return None


def describe() -> str:
    """coremltools version, for ``edgesr backends``."""
    return f"coremltools {ct.__version__}; compute units: {', '.join(COMPUTE_UNITS)}"


@dataclass(frozen=True, kw_only=True)
class CoreMLConfig:
    """``compute_units``: all, cpu, cpu_gpu or cpu_ne (Neural Engine). ``precision`` and
    ``tile`` apply when a checkpoint is converted first: fp32/fp16/int8 (INT8 weights) and the
    tile (height, width) the package is converted for (None: flexible 16..512 pixels)."""

    compute_units: str = "all"
    precision: str = "fp16"
    tile: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.compute_units not in COMPUTE_UNITS:
            raise EdgesrError(f"coreml: compute_units must be one of "
                              f"{', '.join(COMPUTE_UNITS)}, not {self.compute_units!r}")
        if self.precision not in PRECISIONS:
            raise EdgesrError(f"coreml: precision must be one of {', '.join(PRECISIONS)}")


class CoreMLRuntime(Runtime):
    """Predicts with an ML program package, one image of a batch at a time."""

    name = "coreml"

    def __init__(self, model: str | Path, config: CoreMLConfig | None = None):
        super().__init__()
        self.model_path = Path(model)
        self.config = config or CoreMLConfig()
        self.mlmodel = None

    def package(self) -> Path:
        """The package to run: the model itself, or its cached conversion."""
        if self.model_path.suffix == ".mlpackage":
            return self.model_path
        from edgesr.runtimes.engine_cache import BuildOptions, ShapeProfile, build_engine

        profile = (ShapeProfile.fixed(self.config.tile) if self.config.tile
                   else ShapeProfile(min_hw=(16, 16), opt_hw=(64, 64), max_hw=(512, 512)))
        options = BuildOptions(precision=self.config.precision, profile=profile)
        return build_engine("coreml", self.model_path, options).artifact

    def activate_impl(self) -> RuntimeInfo:
        reason = unavailable_reason()
        if reason:
            raise BackendUnavailableError(f"coreml: {reason}")
        path = self.package()
        spec = read_spec(path)
        meta = spec.metadata
        self.mlmodel = ct.models.MLModel(str(path),
                                         compute_units=COMPUTE_UNITS[self.config.compute_units])
        fixed = spec.input_ranges[2][0] == spec.input_ranges[2][1] and \
            spec.input_ranges[3][0] == spec.input_ranges[3][1]
        return RuntimeInfo(scale=int(meta["scale"]), in_channels=int(meta["in_channels"]),
                           out_channels=int(meta["out_channels"]),
                           size_multiple=int(meta.get("size_multiple", 1)),
                           fixed_hw=spec.default_shape[2:] if fixed else None, max_batch=1,
                           precision=meta.get("precision", None if self.model_path.suffix
                                              == ".mlpackage" else self.config.precision),
                           device=self.config.compute_units)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        assert self.mlmodel is not None
        outs = [self.mlmodel.predict({INPUT_NAME: batch[i:i + 1]})[OUTPUT_NAME]
                for i in range(batch.shape[0])]
        return np.concatenate(outs).astype(np.float32, copy=False)

    def deactivate_impl(self) -> None:
        self.mlmodel = None
