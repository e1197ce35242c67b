"""Streaming upscale: same pixels as Upscaler.upscale + to_uint, written row band by row band."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from stub_runtimes import NearestRuntime

from edgesr.errors import EdgesrError
from edgesr.kernels.blend import to_uint
from edgesr.png import PngRowWriter
from edgesr.streaming import auto_tile, upscale_to_png
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


def test_stream_rejects_alpha(tmp_path):
    with NearestRuntime(2) as runtime, pytest.raises(EdgesrError, match="alpha"):
        upscaler = Upscaler(runtime, tile=16, overlap=4)
        upscale_to_png(upscaler, _pattern((8, 8, 4)), tmp_path / "a.png")


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
    with pytest.raises(EdgesrError, match=r"whole 4096x4096 output: it needs \d+ MB.*--stream"):
        auto_tile(0.5e9, stream=False, **common)
    assert auto_tile(0.5e9, stream=True, **common) >= 32
    with pytest.raises(EdgesrError, match="too small: 32-pixel tiles"):
        auto_tile(0.31e9, stream=False, **common)  # not even streaming fits: no --stream hint
