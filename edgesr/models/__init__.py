"""Model definitions, architecture detection and checkpoint loading.

The names below are imported on first use: they need PyTorch, which the lean install lacks, and
``edgesr.models.zoo`` (the bundled models) must stay importable without it.
"""

import importlib

__all__ = [
    "ModelDescriptor",
    "detect_architecture",
    "load_model",
    "load_state_dict",
    "model_from_state_dict",
]
_HOMES = {"ModelDescriptor": "descriptor", "detect_architecture": "detect",
          "model_from_state_dict": "detect", "load_model": "loading",
          "load_state_dict": "loading"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"edgesr.models.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'edgesr.models' has no attribute {name!r}")
