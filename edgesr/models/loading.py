"""Read model files: PyTorch .pth, .safetensors and ncnn .param/.bin pairs."""

import pickle
import zipfile
from pathlib import Path

import torch

from edgesr.errors import CheckpointError, first_line
from edgesr.fsutil import regular_file
from edgesr.models.descriptor import ModelDescriptor
from edgesr.models.detect import model_from_state_dict

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load the tensors of a .pth (``weights_only=True``) or .safetensors file.

    basicsr checkpoints keep the weights under ``params_ema`` (preferred) or ``params``.
    """
    path = Path(path)
    _check_regular(path)
    if path.suffix == ".safetensors":
        return _check_dtypes(path, _load_safetensors(path))
    if path.suffix not in TORCH_SUFFIXES:
        raise CheckpointError(
            f"{path}: unsupported checkpoint type {path.suffix!r} "
            "(expected .pth, .pt, .safetensors or an ncnn .param)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    # Damaged files raise many kinds: OSError (Errno 22) from a truncated zip archive, KeyError
    # or IndexError from the weights-only unpickler on a damaged pickle, and the usual ones.
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError,
            OSError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                              f"({_reason(exc)})") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: checkpoint holds no state_dict of tensors")
    return _check_dtypes(path, obj)


def _check_regular(path: Path) -> None:
    """A missing path, or one that is no regular file (a folder, FIFO, device), is refused."""
    regular_file(path, CheckpointError, "checkpoint")


def _reason(exc: BaseException) -> str:
    """Why torch.load failed, in one line. Its weights-only refusal advises loading with
    ``weights_only=False``, which would run the file's code: that advice is never passed on."""
    if "weights_only" in str(exc) or "Weights only" in str(exc):
        return "it holds Python objects other than tensors, which edgesr never unpickles"
    if isinstance(exc, (KeyError, IndexError, TypeError, AttributeError)):
        return f"a damaged pickle: {type(exc).__name__} {first_line(exc)}"
    return first_line(exc)


def _check_dtypes(path: Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights are floating point (bool, integer or complex ones would be cast in silence);
    BatchNorm's ``num_batches_tracked`` counter is the one integer tensor allowed."""
    for name, tensor in state.items():
        if not tensor.is_floating_point() and not name.endswith("num_batches_tracked"):
            dtype = str(tensor.dtype).removeprefix("torch.")
            raise CheckpointError(f"{path}: weight {name!r} is stored as {dtype}; a model's "
                                  "weights are floating point (float32, float16 or bfloat16)")
    return state


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
