"""Model definitions, architecture detection and checkpoint loading."""

from edgesr.models.descriptor import ModelDescriptor
from edgesr.models.detect import detect_architecture, model_from_state_dict
from edgesr.models.loading import load_model, load_state_dict

__all__ = [
    "ModelDescriptor",
    "detect_architecture",
    "load_model",
    "load_state_dict",
    "model_from_state_dict",
]
