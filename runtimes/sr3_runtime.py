"""SR3 backends: ``edgesr.diffusion.sr3``'s refinement loop behind the runtime protocol, its
denoiser run by the engine its Config names (see ``edgesr.diffusion.sessions``): sr3 on ONNX
Runtime, sr3-openvino on OpenVINO, sr3-tensorrt on TensorRT, sr3-coreml on CoreML, sr3-torch on
the checkpoint's PyTorch module, eagerly (the FP32 reference ``edgesr bench`` compares with).

``infer`` takes low-resolution RGB tiles in [0, 1] and samples each (see the sampler's module
docstring for the loop, the noise schedule and seeding).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.diffusion.coreml_sessions import CoreMLSessionOptions
from edgesr.diffusion.openvino_sessions import OpenVINOSessionOptions
from edgesr.diffusion.sessions import OnnxRuntimeSessionOptions, StageTimer, ran
from edgesr.diffusion.sr3 import SR3Sampler, SR3Sampling
from edgesr.diffusion.tensorrt_sessions import TensorRTSessionOptions
from edgesr.diffusion.torch_sessions import TorchSessionOptions
from edgesr.runtimes.base import Runtime, RuntimeInfo


@dataclass(frozen=True, kw_only=True)
class SR3Config(SR3Sampling, OnnxRuntimeSessionOptions):
    """The sampling options of ``SR3Sampling`` and ONNX Runtime's session options."""

    def __post_init__(self) -> None:
        self.check_engine("sr3")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class SR3OpenVINOConfig(SR3Sampling, OpenVINOSessionOptions):
    """The sampling options of ``SR3Sampling`` and OpenVINO's session options."""

    def __post_init__(self) -> None:
        self.check_engine("sr3-openvino")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class SR3CoreMLConfig(SR3Sampling, CoreMLSessionOptions):
    """The sampling options of ``SR3Sampling`` and CoreML's session options."""

    def __post_init__(self) -> None:
        self.check_engine("sr3-coreml")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class SR3TensorRTConfig(SR3Sampling, TensorRTSessionOptions):
    """The sampling options of ``SR3Sampling`` and TensorRT's session options."""

    def __post_init__(self) -> None:
        self.check_engine("sr3-tensorrt")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class SR3TorchConfig(SR3Sampling, TorchSessionOptions):
    """The sampling options of ``SR3Sampling`` and the PyTorch eager session options."""

    def __post_init__(self) -> None:
        self.check_engine("sr3-torch")
        super().__post_init__()


class SR3Runtime(Runtime):
    """Runs an exported SR3 denoiser's sampling loop tile by tile (batch of 1 each).
    ``info.precision``: the precision the denoiser's engine
    reports it runs, once active;
    ``stage_timer``: time spent in the denoiser (see ``StageTimer``)."""

    name = "sr3"
    config_class: type = SR3Config

    def __init__(self, model_path: str | Path, config=None):
        super().__init__()
        self.model_path = Path(model_path)
        self.config = config or self.config_class()
        self.sampler: SR3Sampler | None = None
        self.stage_timer = StageTimer()

    def activate_impl(self) -> RuntimeInfo:
        self.sampler = SR3Sampler(
            self.model_path, self.config, self.stage_timer.wrap(self.config.sessions(self.name)))
        precision, _ = ran({"denoiser": self.sampler.session})
        channels = self.sampler.channels
        return RuntimeInfo(scale=self.sampler.scale, in_channels=channels,
                           out_channels=channels, size_multiple=self.sampler.size_multiple,
                           preferred_batch=1, precision=precision, device=self.config.where)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        assert self.sampler is not None
        return np.concatenate([self.sampler.sample(tile) for tile in batch])

    def deactivate_impl(self) -> None:
        self.sampler = None


class SR3OpenVINORuntime(SR3Runtime):
    """The refinement loop with its denoiser compiled by OpenVINO."""

    name = "sr3-openvino"
    config_class = SR3OpenVINOConfig


class SR3CoreMLRuntime(SR3Runtime):
    """The refinement loop with its denoiser as a CoreML package beside the .onnx (macOS)."""

    name = "sr3-coreml"
    config_class = SR3CoreMLConfig

    @staticmethod
    def unavailable_reason() -> str | None:
        from edgesr.runtimes.coreml_runtime import unavailable_reason

        return unavailable_reason()


class SR3TensorRTRuntime(SR3Runtime):
    """The refinement loop with its denoiser run as a TensorRT engine."""

    name = "sr3-tensorrt"
    config_class = SR3TensorRTConfig

    @staticmethod
    def unavailable_reason() -> str | None:
        from edgesr.runtimes.tensorrt_build import unavailable_reason

        return unavailable_reason()


class SR3TorchRuntime(SR3Runtime):
    """The refinement loop with its denoiser as the checkpoint's PyTorch module the export
    recorded, run eagerly at FP32."""

    name = "sr3-torch"
    config_class = SR3TorchConfig
