"""The NumPy blend reference: window properties, exact accumulation, rounding, padding."""

import numpy as np
import pytest

from edgesr.errors import EdgesrError
from edgesr.kernels.blend import (
    BLEND_KINDS,
    DEFAULT_BLEND,
    WEIGHT_FLOOR,
    accumulate,
    extract_tile,
    normalize,
    tile_weight,
    to_uint,
    window_1d,
)
from edgesr.tiling import plan_tiles


@pytest.mark.parametrize("kind", BLEND_KINDS)
@pytest.mark.parametrize("length,before,after", [(1, 0, 0), (7, 3, 0), (16, 4, 4), (64, 0, 16),
                                                 (33, 32, 5), (4096, 512, 512)])
def test_window_positive_float32_and_flat_on_border_sides(kind, length, before, after):
    w = window_1d(length, before, after, kind)
    assert w.dtype == np.float32 and w.shape == (length,)
    assert (w > 0).all() and (w <= 1).all()
    assert (w >= np.float32(WEIGHT_FLOOR)).all()  # normal float32, not flushed to zero
    if before == 0:
        assert (w[:length // 2] == 1).all()
    if after == 0:
        assert (w[(length + 1) // 2:] == 1).all()


@pytest.mark.parametrize("kind", BLEND_KINDS)
def test_window_symmetric_and_peaks_inside(kind):
    w = window_1d(40, 8, 8, kind)
    np.testing.assert_array_equal(w, w[::-1])
    assert w[0] < w[4] < w[20] == w.max()
    np.testing.assert_array_equal(window_1d(40, 0, 0, kind), np.ones(40, np.float32))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_overlap_ramps_are_a_partition_of_unity(kind):
    overlap = 12
    a, b = window_1d(48, 0, overlap, kind), window_1d(48, overlap, 0, kind)
    np.testing.assert_allclose(a[-overlap:] + b[:overlap], 1, atol=1e-7)


def test_hann_powers_trust_the_centre_more():
    edge = [window_1d(64, 16, 16, k)[2] for k in ("hann", "hann2", "hann4", "hann8")]
    assert edge == sorted(edge, reverse=True)
    assert DEFAULT_BLEND in BLEND_KINDS


def test_tile_weight_is_the_floored_separable_product():
    wy, wx = window_1d(20, 5, 0, "hann4"), window_1d(30, 7, 9, "hann4")
    wt = tile_weight(20, 30, (5, 0, 7, 9), "hann4")
    assert wt.dtype == np.float32
    np.testing.assert_array_equal(wt, np.maximum(np.outer(wy, wx), np.float32(WEIGHT_FLOOR)))
    corner = tile_weight(4096, 4096, (1, 1, 1, 1), "hann8")
    assert corner.min() == np.float32(WEIGHT_FLOOR)  # the product underflows; the floor holds


def _blend(image_chw, tile, overlap, kind):
    """Cut an image into planned tiles and blend it back with the reference kernels."""
    c, h, w = image_chw.shape
    canvas, wsum = np.zeros((c, h, w), np.float32), np.zeros((h, w), np.float32)
    for t in plan_tiles(h, w, tile, overlap):
        wt = tile_weight(t.valid_h, t.valid_w, t.overlap, kind)
        tile_out = extract_tile(image_chw, t.y, t.x, t.valid_h, t.valid_w)
        accumulate(canvas, wsum, tile_out, wt, t.y, t.x)
    return normalize(canvas, wsum)


@pytest.mark.parametrize("kind", BLEND_KINDS)
def test_normalisation_reproduces_a_constant_image(kind):
    for value in (1.0, 0.5, 0.25):  # exact: a power-of-two scale of each weight
        const = np.full((2, 45, 70), value, np.float32)
        np.testing.assert_array_equal(_blend(const, 16, 5, kind), const)
    const = np.full((1, 45, 70), 0.3, np.float32)
    np.testing.assert_allclose(_blend(const, 16, 5, kind), const, rtol=0, atol=1.2e-7)


def test_accumulate_and_normalize_match_a_scalar_loop(rng):
    c, h, w = 2, 9, 11
    canvas, wsum = np.zeros((c, h, w), np.float32), np.zeros((h, w), np.float32)
    ref_c, ref_w = np.zeros_like(canvas), np.zeros_like(wsum)
    placements = [(0, 0, 6, 7), (3, 4, 6, 7), (0, 4, 5, 7), (4, 0, 5, 5)]  # cover all
    for y0, x0, th, tw in placements:
        tile = rng.random((c, th, tw), dtype=np.float32)
        wt = tile_weight(th, tw, (2, 1, 3, 2), "cosine")
        accumulate(canvas, wsum, tile, wt, y0, x0)
        for j in range(th):
            for i in range(tw):
                ref_w[y0 + j, x0 + i] = np.float32(ref_w[y0 + j, x0 + i] + wt[j, i])
                for ch in range(c):
                    prod = np.float32(tile[ch, j, i] * wt[j, i])
                    ref_c[ch, y0 + j, x0 + i] = np.float32(ref_c[ch, y0 + j, x0 + i] + prod)
    np.testing.assert_array_equal(canvas, ref_c)
    np.testing.assert_array_equal(wsum, ref_w)
    out = normalize(canvas, wsum)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref_c / ref_w[None])
    wsum[4, 5] = 0
    with pytest.raises(EdgesrError, match="covered by no tile"):
        normalize(canvas, wsum)


def test_accumulate_rejects_bad_arguments():
    canvas, wsum = np.zeros((3, 8, 8), np.float32), np.zeros((8, 8), np.float32)
    tile, wt = np.ones((3, 4, 4), np.float32), np.ones((4, 4), np.float32)
    with pytest.raises(EdgesrError, match="does not fit"):
        accumulate(canvas, wsum, tile, wt, 6, 0)
    with pytest.raises(EdgesrError, match="float32"):
        accumulate(canvas, wsum, tile.astype(np.float64), wt, 0, 0)


def _exact_halves(scale: int, parity: int) -> np.ndarray:
    """float32 values x whose float32 product x * scale is exactly k + 0.5, k of the parity."""
    k = np.arange(0, scale, dtype=np.float64)
    x = ((k + 0.5) / scale).astype(np.float32)
    hit = (x * np.float32(scale)) == (k + 0.5).astype(np.float32)
    return x[hit & (k % 2 == parity)]


@pytest.mark.parametrize("bit_depth,dtype", [(8, np.uint8), (16, np.uint16)])
def test_to_uint_rounds_half_to_even_and_clamps(bit_depth, dtype):
    top = (1 << bit_depth) - 1
    out = to_uint(np.array([0.5, 0, 1, -0.2, 1.7, np.inf, -np.inf, np.nan], np.float32), bit_depth)
    assert out.dtype == dtype
    assert out.tolist() == [(top + 1) // 2, 0, top, 0, top, top, 0, 0]
    for parity in (0, 1):
        x = _exact_halves(top, parity)
        assert len(x) > 0
        k = np.floor(x * np.float32(top)).astype(np.int64)
        expected = k if parity == 0 else k + 1  # k + 0.5 goes to the even neighbour
        np.testing.assert_array_equal(to_uint(x, bit_depth), expected)


def test_to_uint_rejects_other_depths():
    with pytest.raises(EdgesrError, match="8 or 16"):
        to_uint(np.zeros(3, np.float32), 10)


@pytest.mark.parametrize("pad_mode,np_mode", [("reflect", "reflect"), ("replicate", "edge")])
@pytest.mark.parametrize("n_h,n_w", [(5, 7), (1, 3), (2, 2)])
def test_extract_tile_pads_like_numpy(rng, pad_mode, np_mode, n_h, n_w):
    image = rng.random((2, n_h, n_w), dtype=np.float32)
    pad = 9
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode=np_mode)
    for y0, x0, h, w in [(0, 0, n_h, n_w), (-3, -2, 6, 12), (n_h - 2, n_w - 1, 8, 5)]:
        tile = extract_tile(image, y0, x0, h, w, pad_mode)
        assert tile.flags.c_contiguous and tile.dtype == np.float32
        np.testing.assert_array_equal(tile, padded[:, y0 + pad:y0 + pad + h, x0 + pad:x0 + pad + w])


def test_extract_tile_errors():
    image = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(EdgesrError, match="pad mode"):
        extract_tile(image, 0, 0, 2, 2, "zeros")
    with pytest.raises(EdgesrError, match="cannot take"):
        extract_tile(image, 0, 0, 0, 2)
    with pytest.raises(EdgesrError, match="blend kind"):
        window_1d(8, 2, 2, "gaussian")
