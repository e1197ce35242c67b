"""Read model files: PyTorch .pth, .safetensors and ncnn .param/.bin pairs."""

import pickle
import zipfile
from pathlib import Path

import torch

from edgesr.errors import CheckpointError, first_line
from edgesr.models.descriptor import ModelDescriptor
from edgesr.models.detect import model_from_state_dict

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load the tensors of a .pth (``weights_only=True``) or .safetensors file.

    basicsr checkpoints keep the weights under ``params_ema`` (preferred) or ``params``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if path.suffix not in TORCH_SUFFIXES:
        raise CheckpointError(
            f"{path}: unsupported checkpoint type {path.suffix!r} "
            "(expected .pth, .pt, .safetensors or an ncnn .param)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                              f"({first_line(exc)})") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: checkpoint holds no state_dict of tensors")
    return obj


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_model(path: str | Path) -> ModelDescriptor:
    """Load any supported model file into a ModelDescriptor (architecture detected)."""
    path = Path(path)
    if path.suffix == ".param":
        from edgesr.models.ncnn import load_ncnn_model

        return load_ncnn_model(path)
    if path.suffix == ".onnx":
        raise CheckpointError(
            f"{path}: an ONNX file is not a PyTorch checkpoint; run it with --backend onnxruntime")
    return model_from_state_dict(load_state_dict(path)).with_source(path)
