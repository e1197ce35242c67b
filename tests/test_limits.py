"""Pixel limits: checked from the file's header before decoding, with the memory they guard."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from stub_runtimes import NearestRuntime

from edgesr.errors import EdgesrError, ImageReadError
from edgesr.limits import PixelLimitError, PixelLimits, parse_pixels
from edgesr.pipeline import FileResult, upscale_file, upscale_many
from edgesr.upscaler import Upscaler


def png_header_only(path, width: int, height: int):
    """A PNG that claims ``width`` x ``height`` RGB and holds no pixel data: decoding it fails,
    so an error about its size proves the size was checked from the header first."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = b""
    for kind, data in ((b"IHDR", ihdr), (b"IDAT", b"not zlib")):
        chunks += struct.pack(">I", len(data)) + kind + data
        chunks += struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


@pytest.mark.parametrize("size, which, out", [
    ((12000, 12000), "input", "o.png"), ((9000, 9000), "output", "o.png"),
    ((80_000_000, 1), "output", "o.png"), ((5000, 5000), "output", "o.jpg")])
def test_too_many_pixels_are_refused_from_the_header(tmp_path, size, which, out):
    src = png_header_only(tmp_path / "big.png", *size)
    with NearestRuntime(scale=4) as runtime:
        with pytest.raises(PixelLimitError, match=rf"big.png: .*{which}.* GB") as info:
            upscale_file(Upscaler(runtime), src, tmp_path / out)
    assert "--max-" in str(info.value)
    assert not (tmp_path / out).exists()


def test_a_streamed_output_may_be_larger_by_default(tmp_path):
    """5000x5000 x4 is 400 Mpx: over the in-memory default (256M), under the streamed one (1G),
    so the PNG output gets as far as decoding the (pixel-less) file."""
    src = png_header_only(tmp_path / "big.png", 5000, 5000)
    with NearestRuntime(scale=4) as runtime:
        with pytest.raises(ImageReadError, match="cannot read image"):
            upscale_file(Upscaler(runtime), src, tmp_path / "o.png")
        with pytest.raises(PixelLimitError, match="over the limit 256000000"):
            upscale_file(Upscaler(runtime), src, tmp_path / "o.png", stream=False)
        with pytest.raises(PixelLimitError, match="over the limit 300000000"):
            upscale_file(Upscaler(runtime), src, tmp_path / "o.png",
                         limits=PixelLimits(output=300_000_000))


def test_limits_are_configurable(tmp_path, rng):
    src = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(src)
    with NearestRuntime(scale=2) as runtime:
        upscaler = Upscaler(runtime)
        with pytest.raises(PixelLimitError, match="600 input pixels.*limit 599"):
            upscale_file(upscaler, src, tmp_path / "a.png", limits=PixelLimits(input=599))
        with pytest.raises(PixelLimitError, match="2400 output pixels.*limit 2399"):
            upscale_file(upscaler, src, tmp_path / "a.png", limits=PixelLimits(output=2399))
        upscale_file(upscaler, src, tmp_path / "a.png", limits=PixelLimits(input=600, output=2400))
        upscale_file(upscaler, src, tmp_path / "b.png", limits=PixelLimits(input=0, output=0))
    assert Image.open(tmp_path / "a.png").size == (60, 40)


def test_a_folder_run_carries_on_past_a_too_big_file(tmp_path, rng):
    big = png_header_only(tmp_path / "a.png", 9000, 9000)
    small = tmp_path / "b.png"
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(small)
    seen: list[FileResult] = []
    with NearestRuntime(scale=2) as runtime:
        results = upscale_many(Upscaler(runtime), [(big, tmp_path / "A.jpg"),
                                                   (small, tmp_path / "B.png")], seen.append)
    assert "output pixels" in results[0].error and results[1].error is None
    assert (tmp_path / "B.png").is_file() and not (tmp_path / "A.jpg").exists()


def test_out_of_memory_is_a_failed_file_not_a_traceback(tmp_path, rng, monkeypatch):
    src = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(src)

    def no_memory(self, *args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(Upscaler, "upscale", no_memory)
    with NearestRuntime(scale=2) as runtime:
        (result,) = upscale_many(Upscaler(runtime), [(src, tmp_path / "o.jpg")], lambda r: None)
    assert "out of memory" in result.error and not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize("text, pixels", [("64M", 64_000_000), ("1.5G", 1_500_000_000),
                                          ("1000", 1000), ("0", 0), ("8000x8000", 64_000_000)])
def test_parse_pixels(text, pixels):
    assert parse_pixels(text) == pixels


@pytest.mark.parametrize("text", ["", "lots", "-5", "8000x"])
def test_parse_pixels_refuses_nonsense(text):
    with pytest.raises(EdgesrError, match="pixel count"):
        parse_pixels(text)
