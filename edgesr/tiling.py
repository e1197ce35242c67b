"""Tile planning: cover an image with equal-size overlapping tiles a model can run.

Each axis is planned over the image's extent rounded up to ``multiple``: the size a whole-image
run pads it to (the tiler cuts tiles with reflection past the border), so tiled and untiled runs
see the same border. The fewest tiles whose overlap is at least ``overlap`` are spread evenly
over that extent: the first starts at 0, the last ends at its end, and the stride is at most
``tile - overlap`` (a fixed stride with only the last tile snapped to the border needs as many
tiles, but can leave two tiles almost on top of each other). An axis no longer than a tile gets
a single tile. All tiles of a plan have one size, so they batch together and a fixed-shape
engine needs one shape only.
"""

import operator
from dataclasses import dataclass

from edgesr.errors import TilingError  # defined there, still importable from here


@dataclass(frozen=True)
class Tile:
    """One tile: the model input is ``image[y:y+h, x:x+w]``, padded past the image border.

    ``valid_h``/``valid_w``: the part inside the image. ``overlap``: pixels shared with the
    neighbouring tile (top, bottom, left, right); 0 on sides that touch the image border.
    """

    y: int
    x: int
    h: int
    w: int
    valid_h: int
    valid_w: int
    overlap: tuple[int, int, int, int]


@dataclass(frozen=True)
class _Span:
    start: int
    size: int
    valid: int
    before: int
    after: int


def _int(value, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TilingError(f"{name} must be an int, got {value!r}") from None


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise TilingError(f"{name} must be an int or a (height, width) pair, got {value!r}")
    return _int(pair[0], name), _int(pair[1], name)


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-value // multiple) * multiple


def _axis(length: int, tile: int, overlap: int, multiple: int, fixed_shape: bool) -> list[_Span]:
    extent = round_up(length, multiple)  # the image padded to the multiple, as untiled runs see it
    if extent <= tile:
        return [_Span(0, tile if fixed_shape else extent, length, 0, 0)]
    stride = tile - overlap
    count = -(-(extent - tile) // stride) + 1
    starts = [i * (extent - tile) // (count - 1) for i in range(count)]
    spans = []
    for i, start in enumerate(starts):
        before = starts[i - 1] + tile - start if i > 0 else 0
        after = start + tile - starts[i + 1] if i < count - 1 else 0
        spans.append(_Span(start, tile, min(tile, length - start), before, after))
    return spans


def plan_tiles(height: int, width: int, tile: int | tuple[int, int], overlap: int,
               multiple: int | tuple[int, int] = 1, *, fixed_shape: bool = False) -> list[Tile]:
    """Tiles covering a ``height`` x ``width`` image, row-major (top to bottom, left to right).

    ``tile``: tile size (int or (h, w)), a multiple of ``multiple``; ``overlap``: the least
    number of pixels neighbouring tiles share, < tile; ``multiple``: model inputs must be
    divisible by it; ``fixed_shape``: every tile is exactly ``tile`` (a fixed-shape engine),
    even on an axis shorter than a tile.
    """
    height, width = _int(height, "image height"), _int(width, "image width")
    if height < 1 or width < 1:
        raise TilingError(f"image size must be positive, got {height}x{width}")
    tile_hw, mult_hw = _pair(tile, "tile"), _pair(multiple, "multiple")
    overlap = _int(overlap, "overlap")
    if overlap < 0:
        raise TilingError(f"overlap must be >= 0, got {overlap}")
    for t, m in zip(tile_hw, mult_hw, strict=True):
        if m < 1:
            raise TilingError(f"size multiple must be >= 1, got {m}")
        if t < 1 or t % m:
            raise TilingError(f"tile size {t} must be >= 1 and a multiple of {m}")
        if overlap >= t:
            raise TilingError(f"overlap {overlap} must be smaller than the tile size {t}")
    rows = _axis(height, tile_hw[0], overlap, mult_hw[0], fixed_shape)
    cols = _axis(width, tile_hw[1], overlap, mult_hw[1], fixed_shape)
    return [Tile(r.start, c.start, r.size, c.size, r.valid, c.valid,
                 (r.before, r.after, c.before, c.after)) for r in rows for c in cols]
