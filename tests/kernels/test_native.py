"""Native (C++) blend kernels agree with the NumPy reference: bit for bit, on random shapes."""

import numpy as np
import pytest

import edgesr.kernels.native as native
from edgesr.kernels import blend
from edgesr.tiling import TilingError, plan_tiles

pytestmark = pytest.mark.skipif(native._ext is None,
                                reason=f"native kernels not built: {native._IMPORT_ERROR}")


@pytest.fixture(scope="module")
def ext():
    return native.load("native")


@pytest.mark.parametrize("pad_mode", blend.PAD_MODES)
@pytest.mark.parametrize("seed", range(12))
def test_extract_tile_matches_reference(ext, pad_mode, seed):
    rng = np.random.default_rng(seed)
    planes, height, width = rng.integers(1, 4), rng.integers(1, 40), rng.integers(1, 40)
    image = rng.random((planes, height, width), dtype=np.float32)
    h, w = rng.integers(1, 2 * height + 8), rng.integers(1, 2 * width + 8)  # larger than image
    y0, x0 = rng.integers(-h, height + 4), rng.integers(-w, width + 4)
    got = ext.extract_tile(image, y0, x0, h, w, pad_mode)
    np.testing.assert_array_equal(got, blend.extract_tile(image, y0, x0, h, w, pad_mode))
    assert got.dtype == np.float32 and got.flags.c_contiguous


def test_extract_tile_any_leading_dims_and_fallbacks(ext):
    image = np.arange(2 * 3 * 5 * 6, dtype=np.float32).reshape(2, 3, 5, 6)
    np.testing.assert_array_equal(ext.extract_tile(image, -3, 2, 9, 7, "replicate"),
                                  blend.extract_tile(image, -3, 2, 9, 7, "replicate"))
    for other in (image.astype(np.uint8), image[..., ::2]):  # dtype, strides: the reference
        np.testing.assert_array_equal(ext.extract_tile(other, 1, -1, 4, 4),
                                      blend.extract_tile(other, 1, -1, 4, 4))
    with pytest.raises(TilingError, match="pad mode"):
        ext.extract_tile(image, 0, 0, 2, 2, "wrap")


def _blend_image(kernels, image, tile, overlap, scale, kind):
    """Blend an image through ``kernels`` the way the tiler does (nearest upscale as 'model')."""
    c, height, width = image.shape
    canvas = np.zeros((c, height * scale, width * scale), np.float32)
    weight_sum = np.zeros(canvas.shape[1:], np.float32)
    for t in plan_tiles(height, width, tile, overlap):
        patch = kernels.extract_tile(image, t.y, t.x, t.h, t.w, "reflect")
        out = patch.repeat(scale, axis=1).repeat(scale, axis=2) * np.float32(1.01)
        vh, vw = t.valid_h * scale, t.valid_w * scale
        weight = blend.tile_weight(vh, vw, tuple(o * scale for o in t.overlap), kind)
        kernels.accumulate(canvas, weight_sum, out[:, :vh, :vw], weight, t.y * scale, t.x * scale)
    return canvas, weight_sum, kernels.normalize(canvas, weight_sum)


@pytest.mark.parametrize("kind", blend.BLEND_KINDS)
@pytest.mark.parametrize("seed", range(4))
def test_accumulate_and_normalize_match_reference(ext, kind, seed):
    rng = np.random.default_rng(seed)
    shape = (rng.integers(1, 4), rng.integers(5, 70), rng.integers(5, 70))
    image = rng.random(shape, dtype=np.float32)
    tile, overlap, scale = (int(v) for v in rng.integers((8, 0, 1), (48, 6, 4)))
    ours = _blend_image(ext, image, tile, overlap, scale, kind)
    ref = _blend_image(native.load("numpy"), image, tile, overlap, scale, kind)
    for got, want in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(got, want)


def test_accumulate_checks_like_reference(ext):
    canvas, weight_sum = np.zeros((3, 8, 8), np.float32), np.zeros((8, 8), np.float32)
    tile, weight = np.ones((3, 4, 4), np.float32), np.ones((4, 4), np.float32)
    with pytest.raises(TilingError, match="does not fit"):
        ext.accumulate(canvas, weight_sum, tile, weight, 5, 0)
    with pytest.raises(TilingError, match="float32"):
        ext.accumulate(canvas, weight_sum, tile.astype(np.float64), weight, 0, 0)
    strided = np.zeros((3, 8, 16), np.float32)[..., ::2]  # handed to the reference
    ext.accumulate(strided, weight_sum, tile, weight, 2, 2)
    assert strided.sum() == 48 and weight_sum.sum() == 16


def test_normalize_rejects_uncovered_pixels(ext):
    canvas, weight_sum = np.ones((1, 2, 2), np.float32), np.ones((2, 2), np.float32)
    weight_sum[1, 1] = np.nan
    with pytest.raises(TilingError, match="covered by no tile"):
        ext.normalize(canvas, weight_sum)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_to_uint_exact_incl_ties_nan_and_out_of_range(ext, bit_depth):
    rng = np.random.default_rng(bit_depth)
    top = (1 << bit_depth) - 1
    ties = (np.arange(top, dtype=np.float32) + np.float32(0.5)) / np.float32(top)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, -1e-9, 1 + 1e-7, 0.5, 1, 0], np.float32)
    values = np.concatenate([ties, special, rng.normal(0.5, 0.6, 100_003).astype(np.float32)])
    got = ext.to_uint(values, bit_depth)
    np.testing.assert_array_equal(got, blend.to_uint(values, bit_depth))
    assert got.dtype == (np.uint8 if bit_depth == 8 else np.uint16)
    image = rng.random((7, 9, 3))[:, ::2]  # float64, strided, HWC
    np.testing.assert_array_equal(ext.to_uint(image, bit_depth), blend.to_uint(image, bit_depth))
    assert ext.to_uint(np.float32(0.5), bit_depth).shape == ()
    with pytest.raises(TilingError, match="bit depth"):
        ext.to_uint(values, 12)


def test_backend_selection(monkeypatch):
    for choice, want in (("numpy", "numpy"), ("native", "native"), ("", "native"),
                         ("AUTO", "native")):
        monkeypatch.setenv("EDGESR_KERNELS", choice)
        assert native._selected() == want
    monkeypatch.setenv("EDGESR_KERNELS", "fortran")
    with pytest.raises(native.NativeKernelsError, match="unknown kernel backend 'fortran'"):
        native._selected()
    assert native.load("numpy").accumulate is blend.accumulate
