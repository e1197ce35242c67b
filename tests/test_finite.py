"""Non-finite model outputs are caught per tile, named by the tile's position, never written."""

import numpy as np
import pytest
from stub_runtimes import NearestRuntime

from edgesr.finite import NonFiniteOutputError, check_tile
from edgesr.streaming import upscale_to_png
from edgesr.tiling import Tile
from edgesr.upscaler import Upscaler


class PoisonRuntime(NearestRuntime):
    """Nearest x2, but ``value`` (NaN or Inf) wherever the input pixel is exactly 0.5."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        out = super().infer_impl(batch)
        return np.where(np.repeat(np.repeat(batch == 0.5, 2, 2), 2, 3), self.value, out)


def _image() -> np.ndarray:
    image = np.zeros((64, 96, 3), np.float32)
    image[40, 50] = 0.5  # in the tile at x=32, y=32 of a 32-pixel plan without overlap
    return image


def test_check_tile_names_the_tile():
    tile = Tile(32, 64, 32, 32, 20, 32, (0, 0, 0, 0))
    check_tile(np.zeros((3, 64, 64), np.float32), tile)
    bad = np.zeros((3, 64, 64), np.float32)
    bad[1, 5, 7] = np.inf
    with pytest.raises(NonFiniteOutputError, match=r"x=64, y=32, w=32, h=20"):
        check_tile(bad, tile)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_upscale_refuses_non_finite_tiles(value):
    with PoisonRuntime(value) as runtime:
        with pytest.raises(NonFiniteOutputError, match=r"x=32, y=32, w=32, h=32"):
            Upscaler(runtime, tile=32, overlap=0).upscale(_image())


def test_streaming_refuses_non_finite_tiles_and_writes_nothing(tmp_path):
    with PoisonRuntime(np.nan) as runtime:
        with pytest.raises(NonFiniteOutputError, match=r"x=32, y=32"):
            upscale_to_png(Upscaler(runtime, tile=32, overlap=0), _image(), tmp_path / "o.png")
    assert list(tmp_path.iterdir()) == []
