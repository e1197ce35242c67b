"""Streaming upscale: same pixels as Upscaler.upscale + to_uint, written row band by row band."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from stub_runtimes import NearestRuntime

from edgesr.errors import EdgesrError
from edgesr.imageio import read_image
from edgesr.kernels.blend import to_uint
from edgesr.png import PngRowWriter
from edgesr.streaming import auto_tile, stream_rows, upscale_to_png, upscale_to_tiff
from edgesr.upscaler import Upscaler


def _decode_png(path) -> np.ndarray:
    """(H, W, C) pixels of a PNG written with filter 0 (Pillow reads 16-bit RGB as 8-bit)."""
    data, idat, at = path.read_bytes(), b"", 8
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + size]
        assert struct.unpack(">I", data[at + 8 + size:at + 12 + size])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        idat += body if kind == b"IDAT" else b""
        at += 12 + size
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[colour]
    lines = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, -1)
    assert (lines[:, 0] == 0).all()
    return lines[:, 1:].copy().view(">u1" if depth == 8 else ">u2").reshape(height, width, channels)


def _pattern(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("shape,tile,overlap", [((45, 70, 3), 16, 4), ((33, 29), 8, 2),
                                                ((20, 50, 1), 64, 8), ((64, 64, 3), 16, 0)])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_stream_equals_whole_image_upscale(tmp_path, shape, tile, overlap, bit_depth):
    image = _pattern(shape)
    path = tmp_path / "out.png"
    with NearestRuntime(2, pattern=(1, 6, 2, 7)) as runtime:
        upscaler = Upscaler(runtime, tile=tile, overlap=overlap, batch=3)
        upscale_to_png(upscaler, image, path, bit_depth=bit_depth)
        want = to_uint(upscaler.upscale(image.astype(np.float32) / 255), bit_depth)
    got = _decode_png(path)
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    if bit_depth == 8:  # and an independent reader agrees
        np.testing.assert_array_equal(np.asarray(Image.open(path)).reshape(want.shape), want)


def test_png_writer_rejects_wrong_rows_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "x.png"
    with pytest.raises(EdgesrError, match="do not fit"), PngRowWriter(path, 4, 2, 3) as writer:
        writer.write(np.zeros((1, 4, 3), np.uint8))
        writer.write(np.zeros((1, 5, 3), np.uint8))
    writer = PngRowWriter(path, 4, 2, 3)
    writer.write(np.zeros((1, 4, 3), np.uint8))
    with pytest.raises(EdgesrError, match="1 of 2 rows"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def _alpha_image(shape, opaque: bool, dtype=np.uint8) -> np.ndarray:
    """A pattern whose last channel is alpha: transparent holes and soft edges, or all opaque."""
    image = _pattern(shape).astype(dtype) * (257 if dtype == np.uint16 else 1)
    top = np.iinfo(dtype).max
    alpha = np.full(shape[:2], top, dtype)
    if not opaque:
        alpha[::3] = 0
        alpha[1::5] = top // 3
    image[..., -1] = alpha
    return image


@pytest.mark.parametrize("channels", [2, 4])
@pytest.mark.parametrize("opaque", [False, True])
@pytest.mark.parametrize("premultiply", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_stream_with_alpha_equals_whole_image_upscale(tmp_path, channels, opaque, premultiply,
                                                      dtype):
    ints = _alpha_image((37, 41, channels), opaque, np.uint16 if dtype == np.uint16 else np.uint8)
    top = np.iinfo(ints.dtype).max
    image = ints.astype(np.float32) / top if dtype == np.float32 else ints
    bit_depth = 16 if dtype == np.uint16 else 8
    with NearestRuntime(2, pattern=(1, 6, 2, 7)) as runtime:
        upscaler = Upscaler(runtime, tile=16, overlap=4, batch=2, premultiply_alpha=premultiply)
        got = np.concatenate(list(stream_rows(upscaler, image, bit_depth)))
        want = to_uint(upscaler.upscale(ints.astype(np.float32) / np.float32(top)), bit_depth)
    np.testing.assert_array_equal(got, want)
    if not opaque:
        assert (want[..., -1] == 0).any()  # holes: the premultiplied path is exercised


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_stream_to_tiff_reads_back_as_the_whole_image_upscale(tmp_path, channels, bit_depth):
    image = _alpha_image((45, 38, channels), False) if channels in (2, 4) else \
        _pattern((45, 38, channels))
    with NearestRuntime(2, pattern=(1, 6, 2, 7)) as runtime:
        upscaler = Upscaler(runtime, tile=16, overlap=4)
        upscale_to_tiff(upscaler, image, tmp_path / "o.tif", bit_depth=bit_depth,
                        icc_profile=None, dpi=(144, 72))
        want = to_uint(upscaler.upscale(image.astype(np.float32) / 255), bit_depth)
    if channels == 2 and bit_depth == 16:  # stored as RGBA, as write_image stores it
        want = want[..., [0, 0, 0, 1]]
    got = read_image(tmp_path / "o.tif")
    assert got.bit_depth == bit_depth and got.dpi == pytest.approx((144, 72))
    np.testing.assert_array_equal(to_uint(got.pixels, bit_depth), want)
    assert [p.name for p in tmp_path.iterdir()] == ["o.tif"]


def test_auto_tile_fits_budget_and_grows_with_it():
    common = dict(height=256, width=4096, scale=4, channels=3, model_bytes_per_pixel=1024,
                  reserved=200e6, stream=True)
    small, big = (auto_tile(budget, multiple=4, **common) for budget in (400e6, 1500e6))
    assert 32 <= small < big and small % 4 == 0 and big % 4 == 0
    with pytest.raises(EdgesrError, match="memory"):
        auto_tile(1e6, **common)


def test_auto_tile_without_stream_counts_the_whole_image():
    common = dict(height=1024, width=1024, scale=4, channels=3, model_bytes_per_pixel=4096,
                  reserved=300e6)
    streamed = auto_tile(1.5e9, stream=True, **common)
    assert 32 <= auto_tile(1.5e9, stream=False, **common) < streamed
    with pytest.raises(EdgesrError, match=r"whole 4096x4096 output: it needs \d+ MB.*streamed"):
        auto_tile(0.5e9, stream=False, **common)
    assert auto_tile(0.5e9, stream=True, **common) >= 32
    with pytest.raises(EdgesrError, match="too small: 32-pixel tiles"):
        auto_tile(0.31e9, stream=False, **common)  # not even streaming fits: no streaming hint
