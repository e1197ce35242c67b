"""PngRowWriter: adaptive filtering across row blocks, ancillary chunks, file targets."""

import errno
import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from edgesr.errors import ImageWriteError
from edgesr.png import PngRowWriter


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_adaptive_filter_decodes_exactly(tmp_path, rng, channels):
    yy, xx = np.mgrid[0:70, 0:45]
    pixels = ((xx * 3 + yy * 5)[..., None] + rng.integers(0, 9, (70, 45, channels))) % 256
    pixels = pixels.astype(np.uint8)
    with PngRowWriter(tmp_path / "a.png", 45, 70, channels, adaptive_filter=True) as writer:
        writer.write(pixels[:50])  # a write boundary inside the second row block, too
        writer.write(pixels[50:])
    got = np.asarray(Image.open(tmp_path / "a.png"))
    np.testing.assert_array_equal(got.reshape(pixels.shape), pixels)


def test_icc_profile_and_dpi_into_a_file_object():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    f = io.BytesIO()
    with PngRowWriter(f, 3, 2, 3, icc_profile=icc, dpi=(300, 150)) as writer:
        writer.write(np.full((2, 3, 3), 7, np.uint8))
    image = Image.open(io.BytesIO(f.getvalue()))
    assert image.info["icc_profile"] == icc
    assert image.info["dpi"] == pytest.approx((300, 150), abs=0.05)  # stored per metre
    assert (np.asarray(image) == 7).all()


def test_two_writers_of_one_target_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "o.png"
    images = [np.full((64, 48, 3), v, np.uint8) for v in (10, 200)]
    writers = [PngRowWriter(target, 48, 64, 3) for _ in images]
    for start in range(0, 64, 16):  # interleaved, as two concurrent --stream runs write
        for writer, image in zip(writers, images, strict=True):
            writer.write(image[start:start + 16])
    for writer in writers:
        writer.close()
    assert np.array_equal(np.asarray(Image.open(target)), images[1])
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]


class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data: bytes) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)


@pytest.mark.parametrize("width, room, fails_in", [(1024, 100, "write"), (256, 3000, "close")])
def test_full_disk_is_one_clear_error_and_leaves_no_file(tmp_path, width, room, fails_in):
    writer = PngRowWriter(tmp_path / "o.png", width, 512, 3)
    writer._file = _FullDisk(writer._file, room)
    rows = np.random.default_rng(0).integers(0, 255, (512, width, 3), np.uint8)
    written = 0
    with pytest.raises(ImageWriteError, match="No space left"):
        with writer:
            for start in range(0, 512, 256):
                writer.write(rows[start:start + 256])
                written += 1
    assert written == (2 if fails_in == "close" else 1)
    assert list(tmp_path.iterdir()) == []


def test_missing_folders_are_created_as_write_image_does(tmp_path):
    target = tmp_path / "a" / "b" / "o.png"
    with PngRowWriter(target, 4, 2, 3) as png:
        png.write(np.zeros((2, 4, 3), np.uint8))
    assert Image.open(target).size == (4, 2)
