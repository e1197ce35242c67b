"""EXIF from the source photo in the upscaled JPEG, PNG and WebP, orientation reset to 1."""

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from edgesr.exif import ORIENTATION, carry_exif, read_exif

MAKE, DATE = 0x010F, 0x0132


@pytest.fixture
def camera_jpeg(tmp_path, rng):
    pixels = (smooth_image(rng, 12, 20) * 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[MAKE], exif[DATE], exif[ORIENTATION] = "EdgeCam", "2024:05:01 10:00:00", 6
    path = tmp_path / "camera.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("ext,mode", [(".jpg", "RGB"), (".png", "RGB"), (".png", "RGBA"),
                                      (".webp", "RGB"), (".webp", "RGBA")])
def test_exif_is_inserted_without_touching_pixels(tmp_path, camera_jpeg, ext, mode):
    target = tmp_path / f"out{ext}"
    Image.new(mode, (40, 24), (10, 200, 30, 128)[:len(mode)]).save(target, lossless=True)
    before = np.asarray(Image.open(target).convert(mode))
    assert carry_exif(camera_jpeg, target)
    with Image.open(target) as out:
        exif = out.getexif()
        assert exif[MAKE] == "EdgeCam" and exif[DATE] == "2024:05:01 10:00:00"
        assert exif[ORIENTATION] == 1  # the pixels are already upright
        assert out.size == (40, 24) and np.array_equal(np.asarray(out.convert(mode)), before)


def test_no_exif_or_unsupported_output_leaves_the_file(tmp_path, camera_jpeg):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    target = tmp_path / "t.png"
    Image.new("RGB", (8, 8)).save(target)
    data = target.read_bytes()
    assert read_exif(plain) is None and not carry_exif(plain, target)
    assert target.read_bytes() == data
    tiff = tmp_path / "t.tif"
    Image.new("RGB", (8, 8)).save(tiff)
    assert not carry_exif(camera_jpeg, tiff)


def test_session_upscale_file_carries_exif(tmp_path, camera_jpeg):
    import torch
    from tiny_models import make_tiny

    import edgesr

    checkpoint = tmp_path / "tiny.pth"
    torch.save({"params": make_tiny("compact_x2").state_dict()}, checkpoint)
    with edgesr.load(checkpoint, backend="torch", tile=16, overlap=4) as sr:
        out = sr.upscale_file(camera_jpeg, tmp_path / "up.png")
    with Image.open(out) as image:
        assert image.size == (24, 40)  # orientation 6 applied: 12x20 portrait -> x2
        assert image.getexif()[MAKE] == "EdgeCam" and image.getexif()[ORIENTATION] == 1
