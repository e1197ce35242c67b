"""Tile planning: coverage, edge tiles, small images, fixed shapes, argument checks."""

import math

import numpy as np
import pytest

from edgesr.errors import EdgesrError
from edgesr.tiling import Tile, TilingError, plan_tiles, round_up

CASES = [  # height, width, tile, overlap, multiple
    (37, 53, 16, 4, 1),
    (230, 50, 128, 32, 1),
    (256, 256, 128, 32, 1),
    (129, 300, 64, 60, 1),
    (97, 101, 32, 0, 4),
    (1, 1, 8, 2, 1),
    (200, 90, (64, 32), 8, (4, 2)),
    (70, 20, (32, 32), 8, 1),
]


def _pairs(value):
    return value if isinstance(value, tuple) else (value, value)


@pytest.mark.parametrize("height,width,tile,overlap,multiple", CASES)
def test_plan_covers_every_pixel_with_equal_tiles(height, width, tile, overlap, multiple):
    tiles = plan_tiles(height, width, tile, overlap, multiple)
    (tile_h, tile_w), (m_h, m_w) = _pairs(tile), _pairs(multiple)
    extent_h, extent_w = round_up(height, m_h), round_up(width, m_w)
    cover = np.zeros((height, width), int)
    assert len({(t.h, t.w) for t in tiles}) == 1  # one shape: batches together
    for t in tiles:
        assert t.h % m_h == 0 and t.w % m_w == 0
        assert t.h == min(tile_h, extent_h) and t.w == min(tile_w, extent_w)
        assert t.y + t.h <= max(extent_h, t.h) and t.x + t.w <= max(extent_w, t.w)
        assert t.valid_h == min(t.h, height - t.y) and t.valid_w == min(t.w, width - t.x)
        assert t.y >= 0 and t.x >= 0
        cover[t.y:t.y + t.valid_h, t.x:t.x + t.valid_w] += 1
    assert (cover >= 1).all()
    assert [(t.y, t.x) for t in tiles] == sorted((t.y, t.x) for t in tiles)  # row-major


@pytest.mark.parametrize("height,width,tile,overlap,multiple", CASES)
def test_edge_tiles_touch_the_border_and_overlaps_are_consistent(height, width, tile, overlap,
                                                                 multiple):
    tiles = plan_tiles(height, width, tile, overlap, multiple)
    for length, size, m, axis in ((height, _pairs(tile)[0], _pairs(multiple)[0], 0),
                                  (width, _pairs(tile)[1], _pairs(multiple)[1], 1)):
        starts = sorted({(t.y, t.x)[axis] for t in tiles})
        extent = round_up(length, m)  # the padded image an untiled run sees
        assert starts[0] == 0 and starts[-1] + min(size, extent) == extent  # snapped to the end
        if extent > size:  # fewest tiles with at least the requested overlap
            assert len(starts) == math.ceil((extent - size) / (size - overlap)) + 1
        for a, b in zip(starts, starts[1:], strict=False):
            assert a + size - b >= overlap
    by_pos = {(t.y, t.x): t for t in tiles}
    rows, cols = sorted({t.y for t in tiles}), sorted({t.x for t in tiles})
    for t in tiles:
        top, bottom, left, right = t.overlap
        assert (top == 0) == (t.y == 0) or height <= _pairs(tile)[0]
        assert (bottom == 0) == (t.y + t.valid_h == height)
        assert (left == 0) == (t.x == 0) or width <= _pairs(tile)[1]
        assert (right == 0) == (t.x + t.valid_w == width)
        below = rows.index(t.y) + 1
        if below < len(rows):
            assert bottom == t.y + t.h - rows[below] == by_pos[rows[below], t.x].overlap[0]
        beside = cols.index(t.x) + 1
        if beside < len(cols):
            assert right == t.x + t.w - cols[beside] == by_pos[t.y, cols[beside]].overlap[2]


def test_tiles_spread_evenly_instead_of_piling_up_at_the_border():
    starts = [t.y for t in plan_tiles(230, 10, 128, 32)]
    assert starts == [0, 51, 102]  # a fixed stride of 96 would give 0, 96, 102


def test_image_smaller_than_a_tile_is_one_padded_tile():
    assert plan_tiles(37, 53, 64, 16, 4) == [Tile(0, 0, 40, 56, 37, 53, (0, 0, 0, 0))]
    assert plan_tiles(20, 20, (32, 32), 8, fixed_shape=True) == [
        Tile(0, 0, 32, 32, 20, 20, (0, 0, 0, 0))]
    assert plan_tiles(64, 64, 64, 16) == [Tile(0, 0, 64, 64, 64, 64, (0, 0, 0, 0))]


def test_fixed_shape_tiles_stay_inside_larger_images():
    tiles = plan_tiles(37, 70, (32, 32), 8, fixed_shape=True)
    assert {(t.h, t.w) for t in tiles} == {(32, 32)}
    assert sorted({t.y for t in tiles}) == [0, 5] and sorted({t.x for t in tiles}) == [0, 19, 38]


def test_size_multiple_tiles_cover_the_padded_extent_like_an_untiled_run():
    # 37 rows pad to 40 for a x1 RRDB (multiple 4): the last tile reads 3 reflected rows
    rows = sorted({(t.y, t.valid_h, t.overlap[:2]) for t in plan_tiles(37, 8, 16, 4, 4)})
    assert rows == [(0, 16, (0, 4)), (12, 16, (4, 4)), (24, 13, (4, 0))]


@pytest.mark.parametrize("args,message", [
    ((10, 10, 16, 16), "overlap 16 must be smaller than the tile size 16"),
    ((10, 10, 16, -1), "overlap must be >= 0"),
    ((10, 10, 0, 0), "tile size 0 must be >= 1"),
    ((10, 10, 30, 4, 4), "tile size 30 must be >= 1 and a multiple of 4"),
    ((10, 10, 16, 4, 0), "size multiple must be >= 1"),
    ((0, 10, 16, 4), "image size must be positive"),
    ((10, 10, 16.0, 4), "tile must be an int"),
    ((10, 10, (16, 16, 16), 4), r"\(height, width\) pair"),
])
def test_invalid_arguments(args, message):
    with pytest.raises(TilingError, match=message) as info:
        plan_tiles(*args)
    assert isinstance(info.value, EdgesrError)


def test_numpy_ints_are_accepted():
    tiles = plan_tiles(np.int64(40), np.int32(40), (np.int64(16), 16), np.int64(4))
    assert len(tiles) == 9
