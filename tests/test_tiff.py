"""TiffStripWriter: strips across write boundaries, metadata, no partial file."""

import numpy as np
import pytest
from PIL import Image, ImageCms

from edgesr.errors import EdgesrError
from edgesr.imageio import read_image
from edgesr.kernels.blend import to_uint
from edgesr.tiff import TiffStripWriter


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_strips_read_back_exactly(tmp_path, rng, channels, bit_depth):
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    pixels = rng.integers(0, np.iinfo(dtype).max, (23, 17, channels), dtype=dtype, endpoint=True)
    with TiffStripWriter(tmp_path / "a.tif", 17, 23, channels, bit_depth,
                         rows_per_strip=5) as writer:
        for start in (0, 3, 11, 12):  # writes that start and end inside strips
            writer.write(pixels[start:{0: 3, 3: 11, 11: 12, 12: 23}[start]])
    got = read_image(tmp_path / "a.tif")
    want = pixels[..., [0, 0, 0, 1]] if (channels, bit_depth) == (2, 16) else pixels
    assert got.bit_depth == bit_depth
    np.testing.assert_array_equal(to_uint(got.pixels, bit_depth), want)


def test_icc_profile_and_dpi(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with TiffStripWriter(tmp_path / "a.tif", 3, 2, 3, icc_profile=icc, dpi=(300, 150.5)) as w:
        w.write(np.full((2, 3, 3), 7, np.uint8))
    with Image.open(tmp_path / "a.tif") as image:
        assert image.info["icc_profile"] == icc
        assert image.info["dpi"] == pytest.approx((300, 150.5))
        assert (np.asarray(image) == 7).all()


def test_tiff_writer_rejects_wrong_rows_and_leaves_no_partial_file(tmp_path):
    with pytest.raises(EdgesrError, match="do not fit"), \
            TiffStripWriter(tmp_path / "x.tif", 4, 2, 3) as writer:
        writer.write(np.zeros((1, 4, 3), np.uint8))
        writer.write(np.zeros((1, 5, 3), np.uint8))
    writer = TiffStripWriter(tmp_path / "x.tif", 4, 2, 3)
    writer.write(np.zeros((1, 4, 3), np.uint8))
    with pytest.raises(EdgesrError, match="1 of 2 rows"):
        writer.close()
    assert list(tmp_path.iterdir()) == []
