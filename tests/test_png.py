"""PngRowWriter: adaptive filtering across row blocks, ancillary chunks, file targets."""

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

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
