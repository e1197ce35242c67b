"""Stable Diffusion x4 upscaler backends: ``edgesr.diffusion.sd_upscaler``'s sampler behind the
runtime protocol, its UNet and VAE run by the engine its Config names (see
``edgesr.diffusion.sessions``): sd-upscaler on ONNX Runtime, sd-upscaler-openvino on OpenVINO,
sd-upscaler-tensorrt on TensorRT, sd-upscaler-coreml on CoreML, sd-upscaler-torch on diffusers' own
PyTorch modules, eagerly (the FP32 reference ``edgesr bench`` compares with).

``infer`` takes low-resolution RGB tiles in [0, 1] and samples each (see the sampler's module
docstring for the loop, latent tiling and seeding).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.diffusion.coreml_sessions import CoreMLSessionOptions
from edgesr.diffusion.openvino_sessions import OpenVINOSessionOptions
from edgesr.diffusion.sd_upscaler import SDSampling, SDUpscalerSampler, unavailable_reason
from edgesr.diffusion.sessions import OnnxRuntimeSessionOptions, StageTimer, ran
from edgesr.diffusion.tensorrt_sessions import TensorRTSessionOptions
from edgesr.diffusion.torch_sessions import TorchSessionOptions
from edgesr.runtimes.base import Runtime, RuntimeInfo

__all__ = ["SDUpscalerConfig", "SDUpscalerCoreMLConfig", "SDUpscalerCoreMLRuntime",
           "SDUpscalerOpenVINOConfig", "SDUpscalerOpenVINORuntime", "SDUpscalerRuntime",
           "SDUpscalerTensorRTConfig", "SDUpscalerTensorRTRuntime", "SDUpscalerTorchConfig",
           "SDUpscalerTorchRuntime", "unavailable_reason"]


@dataclass(frozen=True, kw_only=True)
class SDUpscalerConfig(SDSampling, OnnxRuntimeSessionOptions):
    """The sampling options of ``SDSampling`` and ONNX Runtime's session options."""

    def __post_init__(self) -> None:
        self.check_engine("sd-upscaler")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class SDUpscalerOpenVINOConfig(SDSampling, OpenVINOSessionOptions):
    """The sampling options of ``SDSampling`` and OpenVINO's session options."""

    def __post_init__(self) -> None:
        self.check_engine("sd-upscaler-openvino")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class SDUpscalerCoreMLConfig(SDSampling, CoreMLSessionOptions):
    """The sampling options of ``SDSampling`` and CoreML's session options."""

    def __post_init__(self) -> None:
        self.check_engine("sd-upscaler-coreml")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class SDUpscalerTensorRTConfig(SDSampling, TensorRTSessionOptions):
    """The sampling options of ``SDSampling`` and TensorRT's session options."""

    def __post_init__(self) -> None:
        self.check_engine("sd-upscaler-tensorrt")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class SDUpscalerTorchConfig(SDSampling, TorchSessionOptions):
    """The sampling options of ``SDSampling`` and the PyTorch eager session options."""

    def __post_init__(self) -> None:
        self.check_engine("sd-upscaler-torch")
        super().__post_init__()


class SDUpscalerRuntime(Runtime):
    """Runs an exported Stable Diffusion x4 upscaler folder tile by tile (batch of 1 each).
    ``info.precision``: the precision the UNet's engine reports
    it runs, once active (a VAE at another precision is noted);
    ``stage_timer``: time spent in each graph (see ``StageTimer``)."""

    name = "sd-upscaler"
    config_class: type = SDUpscalerConfig
    unavailable_reason = staticmethod(unavailable_reason)

    def __init__(self, model_path: str | Path, config=None):
        super().__init__()
        self.folder = Path(model_path)
        self.config = config or self.config_class()
        self.sampler: SDUpscalerSampler | None = None
        self.stage_timer = StageTimer()

    def activate_impl(self) -> RuntimeInfo:
        self.sampler = SDUpscalerSampler(
            self.folder, self.config, self.stage_timer.wrap(self.config.sessions(self.name)))
        precision, note = ran({"unet": self.sampler.unet, "VAE decoder": self.sampler.vae})
        return RuntimeInfo(scale=self.sampler.scale, in_channels=3, out_channels=3,
                           size_multiple=self.sampler.size_multiple, preferred_batch=1,
                           precision=precision, precision_note=note, device=self.config.where)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        assert self.sampler is not None
        return np.concatenate([self.sampler.sample(tile) for tile in batch])

    def deactivate_impl(self) -> None:
        self.sampler = None


class SDUpscalerOpenVINORuntime(SDUpscalerRuntime):
    """The sampler with its UNet and VAE compiled by OpenVINO."""

    name = "sd-upscaler-openvino"
    config_class = SDUpscalerOpenVINOConfig


class SDUpscalerCoreMLRuntime(SDUpscalerRuntime):
    """The sampler with its UNet and VAE as CoreML packages beside the ONNX graphs (macOS)."""

    name = "sd-upscaler-coreml"
    config_class = SDUpscalerCoreMLConfig

    @staticmethod
    def unavailable_reason() -> str | None:
        from edgesr.runtimes.coreml_runtime import unavailable_reason as coreml_reason

        return coreml_reason() or unavailable_reason()


class SDUpscalerTensorRTRuntime(SDUpscalerRuntime):
    """The sampler with its UNet and VAE run as TensorRT engines."""

    name = "sd-upscaler-tensorrt"
    config_class = SDUpscalerTensorRTConfig

    @staticmethod
    def unavailable_reason() -> str | None:
        from edgesr.runtimes.tensorrt_build import unavailable_reason as tensorrt_reason

        return tensorrt_reason() or unavailable_reason()


class SDUpscalerTorchRuntime(SDUpscalerRuntime):
    """The sampler with its UNet and VAE as the diffusers modules the export recorded, run
    eagerly by PyTorch at FP32."""

    name = "sd-upscaler-torch"
    config_class = SDUpscalerTorchConfig
