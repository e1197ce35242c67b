"""Blend kernels by backend: the native C++ extension when it is built, the NumPy reference else.

``EDGESR_KERNELS`` picks the backend the module-level functions use: ``auto`` (default: native
when built), ``native`` (fail if it is not built) or ``numpy``. ``load(name)`` returns either
backend explicitly, e.g. to compare them. Every function has ``kernels.blend``'s signature and
contract; windows (``window_1d``, ``tile_weight``) always come from the reference.

The native functions take float32 C-contiguous arrays; anything else (another dtype, a strided
canvas) is handed to the reference, so results never depend on which backend ran.
"""

import os
from types import SimpleNamespace

import numpy as np

from edgesr.errors import EdgesrError, TilingError
from edgesr.kernels import blend
from edgesr.kernels.blend import (  # noqa: F401  (re-exported for the tiler)
    BLEND_KINDS,
    DEFAULT_BLEND,
    PAD_MODES,
    WEIGHT_FLOOR,
    tile_weight,
    window_1d,
)

try:
    from edgesr.kernels import _blend_native as _ext
except ImportError as exc:  # not built: pip install without a compiler, or a source checkout
    _ext, _IMPORT_ERROR = None, exc
else:
    _IMPORT_ERROR = None

BACKENDS = ("native", "numpy")
KERNEL_NAMES = ("accumulate", "normalize", "to_uint", "extract_tile")


class NativeKernelsError(EdgesrError):
    """The native kernels were asked for but are not built, or the backend name is unknown."""


def _is_f32_c(array) -> bool:
    return (isinstance(array, np.ndarray) and array.dtype == np.float32
            and array.flags.c_contiguous)


def accumulate(canvas: np.ndarray, weight_sum: np.ndarray, tile_out: np.ndarray,
               weight: np.ndarray, y: int, x: int) -> None:
    """Native ``blend.accumulate``: ``canvas += tile_out * weight``, ``weight_sum += weight``."""
    if not (_is_f32_c(canvas) and _is_f32_c(weight_sum)):
        return blend.accumulate(canvas, weight_sum, tile_out, weight, y, x)
    blend._check_f32("tile_out", tile_out, 3)
    blend._check_f32("weight", weight, 2)
    c, h, w = tile_out.shape
    if (weight.shape != (h, w) or canvas.ndim != 3 or weight_sum.ndim != 2
            or canvas.shape[0] != c or canvas.shape[1:] != weight_sum.shape
            or y < 0 or x < 0 or y + h > canvas.shape[1] or x + w > canvas.shape[2]):
        raise TilingError(f"tile {tile_out.shape} with weight {weight.shape} at ({y}, {x}) does "
                          f"not fit canvas {canvas.shape} / weight sum {weight_sum.shape}")
    _ext.accumulate(canvas, weight_sum, np.ascontiguousarray(tile_out),
                    np.ascontiguousarray(weight), y, x)


def normalize(canvas: np.ndarray, weight_sum: np.ndarray) -> np.ndarray:
    """Native ``blend.normalize``: ``canvas / weight_sum`` as a new (C, H, W) float32 array."""
    blend._check_f32("canvas", canvas, 3)
    blend._check_f32("weight_sum", weight_sum, 2)
    if canvas.shape[1:] != weight_sum.shape:
        raise TilingError(f"canvas {canvas.shape} and weight sum {weight_sum.shape} differ")
    canvas, weight_sum = np.ascontiguousarray(canvas), np.ascontiguousarray(weight_sum)
    out = np.empty_like(canvas)
    if _ext.normalize(canvas, weight_sum, out) == _ext.UNCOVERED:
        raise TilingError("some output pixels were covered by no tile (weight sum 0)")
    return out


def to_uint(image: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Native ``blend.to_uint``: float image in [0, 1] to uint8 (bit_depth 8) or uint16 (16)."""
    if bit_depth not in (8, 16):
        raise TilingError(f"bit depth must be 8 or 16, got {bit_depth}")
    values = np.asarray(image, dtype=np.float32, order="C")
    out = np.empty(values.shape, np.uint8 if bit_depth == 8 else np.uint16)
    (_ext.to_u8 if bit_depth == 8 else _ext.to_u16)(values, out)
    return out


def extract_tile(image: np.ndarray, y0: int, x0: int, h: int, w: int,
                 pad_mode: str = "reflect") -> np.ndarray:
    """Native ``blend.extract_tile``: ``image[..., y0:y0+h, x0:x0+w]``, padded by ``pad_mode``."""
    if (not _is_f32_c(image) or pad_mode not in PAD_MODES or image.ndim < 2
            or min(image.shape[-2:]) < 1 or h < 1 or w < 1):
        return blend.extract_tile(image, y0, x0, h, w, pad_mode)
    mode = _ext.PAD_REFLECT if pad_mode == "reflect" else _ext.PAD_REPLICATE
    return _ext.extract_tile(image, y0, x0, h, w, mode)


def load(name: str) -> SimpleNamespace:
    """The kernels of backend ``name`` ("native" or "numpy") as a namespace of functions."""
    if name not in BACKENDS:
        raise NativeKernelsError(f"unknown kernel backend {name!r}; choose from "
                                 f"{', '.join(BACKENDS)}")
    if name == "native" and _ext is None:
        raise NativeKernelsError(f"native blend kernels are not built ({_IMPORT_ERROR}); "
                                 "reinstall with a C++ compiler and CMake, or use numpy")
    source = _NATIVE if name == "native" else vars(blend)
    return SimpleNamespace(name=name, **{k: source[k] for k in KERNEL_NAMES})


_NATIVE = {k: globals()[k] for k in KERNEL_NAMES}


def _selected() -> str:
    choice = os.environ.get("EDGESR_KERNELS", "auto").strip().lower() or "auto"
    if choice == "auto":
        return "native" if _ext is not None else "numpy"
    return load(choice).name


#: The backend behind this module's functions: "native" or "numpy" (see EDGESR_KERNELS).
BACKEND = _selected()
if BACKEND == "numpy":
    accumulate, normalize, to_uint, extract_tile = (
        getattr(blend, k) for k in KERNEL_NAMES)
