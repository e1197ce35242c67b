"""HEIC/HEIF (pillow-heif) and AVIF read and written through edgesr.imageio; a clear line when
pillow-heif is missing."""

import sys

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from edgesr import heif
from edgesr.errors import ImageReadError, ImageWriteError
from edgesr.imageio import IMAGE_EXTENSIONS, list_images, read_image, write_image


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_round_trip_and_listed(tmp_path, rng, ext):
    if ext == ".heic":
        pytest.importorskip("pillow_heif")
    pixels = smooth_image(rng, 32, 48)
    path = tmp_path / f"photo{ext}"
    write_image(path, pixels)
    image = read_image(path)
    assert image.pixels.shape == (32, 48, 3) and image.bit_depth == 8
    assert np.abs(image.pixels - pixels).mean() < 0.03  # lossy, but the same picture
    assert Image.open(path).format == heif.FORMATS[ext]
    assert ext in IMAGE_EXTENSIONS and list_images(tmp_path) == [path]


def test_sixteen_bit_sources_are_written_at_eight_bits(tmp_path, rng):
    pytest.importorskip("pillow_heif")
    path = tmp_path / "deep.heic"
    write_image(path, (smooth_image(rng, 16, 16) * 65535).astype(np.uint16))
    assert read_image(path).pixels.shape == (16, 16, 3)


def test_missing_pillow_heif_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails
    (tmp_path / "x.heic").write_bytes(b"\0\0\0\x18ftypheic")  # exists: refused for the module
    with pytest.raises(ImageReadError, match=r"pip install 'edgesr\[heif\]'"):
        read_image(tmp_path / "x.heic")
    with pytest.raises(ImageWriteError, match="needs pillow-heif"):
        write_image(tmp_path / "x.heif", np.zeros((4, 4, 3), np.float32))
    assert not (tmp_path / "x.heif").exists()
