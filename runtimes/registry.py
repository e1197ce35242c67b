"""Backend registry: one entry per backend, imported lazily so optional dependencies stay optional.

Each entry names the module and its Runtime and Config classes; ``create_runtime`` builds a
runtime from a backend name, a model file and keyword options for that backend's Config.
"""

import importlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgesr.errors import BackendUnavailableError, EdgesrError


@dataclass(frozen=True)
class BackendEntry:
    module: str
    runtime_class: str
    config_class: str
    requires: str  # the pip distribution that provides it, for error messages


BACKENDS: dict[str, BackendEntry] = {
    "torch": BackendEntry("edgesr.runtimes.torch_runtime", "TorchRuntime", "TorchConfig", "torch"),
    "onnxruntime": BackendEntry("edgesr.runtimes.onnxruntime_runtime", "OnnxRuntime",
                                "OnnxRuntimeConfig", "onnxruntime"),
    "openvino": BackendEntry("edgesr.runtimes.openvino_runtime", "OpenVINORuntime",
                             "OpenVINOConfig", "openvino"),
    "tensorrt": BackendEntry("edgesr.runtimes.tensorrt_runtime", "TensorRTRuntime",
                             "TensorRTConfig", "tensorrt cuda-python"),
    "coreml": BackendEntry("edgesr.runtimes.coreml_runtime", "CoreMLRuntime", "CoreMLConfig",
                           "coremltools"),
    "sd-upscaler": BackendEntry("edgesr.runtimes.sd_upscaler_runtime", "SDUpscalerRuntime",
                                "SDUpscalerConfig", "onnxruntime diffusers"),
    "sr3": BackendEntry("edgesr.runtimes.sr3_runtime", "SR3Runtime", "SR3Config", "onnxruntime"),
}


def _load(name: str) -> tuple[type, type]:
    entry = BACKENDS.get(name)
    if entry is None:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}")
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} needs {entry.requires} ({exc}); install it with "
            f"pip install {entry.requires}") from None
    return getattr(module, entry.runtime_class), getattr(module, entry.config_class)


def config_for(name: str, **options: Any):
    """Build the Config dataclass of backend ``name`` from keyword options."""
    _, config_cls = _load(name)
    known = {f.name for f in fields(config_cls)}
    unknown = set(options) - known
    if unknown:
        raise EdgesrError(f"backend {name!r} has no option(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(known))}")
    return config_cls(**options)


def create_runtime(name: str, model: str | Path, **options: Any):
    """Create (not yet activated) runtime ``name`` for ``model`` with backend options."""
    runtime_cls, _ = _load(name)
    return runtime_cls(model, config_for(name, **options))
