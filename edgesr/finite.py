"""A model's output must be finite: NaN or Inf (from NaN/Inf weights, or an overflow at low
precision) would be written as black or white pixels with no word, so each tile is checked."""

import numpy as np

from edgesr.errors import InferenceError
from edgesr.tiling import Tile


class NonFiniteOutputError(InferenceError):
    """The model returned NaN or Inf for a tile."""


def check_tile(output: np.ndarray, tile: Tile) -> None:
    """Raise NonFiniteOutputError naming ``tile``'s position (input pixels) unless every value
    of ``output``, the model's output for it, is finite."""
    if not np.isfinite(output).all():
        kinds = " and ".join(name for name, bad in (("NaN", np.isnan(output).any()),
                                                    ("Inf", np.isinf(output).any())) if bad)
        raise NonFiniteOutputError(
            f"the model returned {kinds} for the tile at x={tile.x}, y={tile.y}, "
            f"w={tile.valid_w}, h={tile.valid_h} (input pixels); its weights may hold NaN/Inf "
            "or its precision overflows; nothing was written")
