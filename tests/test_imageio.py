"""Image files: round trips per format, depth and channel layout; orientation; metadata; errors."""

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms

from edgesr import imageio
from edgesr.errors import ImageReadError, ImageWriteError
from edgesr.imageio import IMAGE_EXTENSIONS, Image, list_images, read_image, write_image


def levels(rng: np.random.Generator, channels: int, bit_depth: int, h: int = 23, w: int = 31):
    """Random HWC float32 pixels that an integer file of ``bit_depth`` holds exactly."""
    top = 2**bit_depth - 1
    return (rng.integers(0, top + 1, (h, w, channels)) / top).astype(np.float32)


def icc(colour_space: str) -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile(colour_space)).tobytes()


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_lossless_round_trip_is_exact(tmp_path, rng, ext, bit_depth, channels):
    pixels = levels(rng, channels, bit_depth)
    path = tmp_path / f"img{ext}"
    write_image(path, pixels, bit_depth=bit_depth)
    image = read_image(path)
    assert image.bit_depth == bit_depth
    assert image.pixels.dtype == np.float32
    if ext != ".png" and bit_depth == 16 and channels == 2:
        # Pillow cannot read 16-bit gray+alpha TIFF, so it is written as RGBA.
        assert np.array_equal(image.pixels, pixels[..., [0, 0, 0, 1]])
    else:
        assert np.array_equal(image.pixels, pixels)
    assert image.has_alpha == (channels in (2, 4))


@pytest.mark.parametrize("channels", [3, 4])
def test_webp_quality_100_is_lossless(tmp_path, rng, channels):
    pixels = levels(rng, channels, 8)
    pixels[:3, :3, -1] = 0  # colour under transparent pixels is kept too
    write_image(tmp_path / "img.webp", pixels, quality=100)
    assert np.array_equal(read_image(tmp_path / "img.webp").pixels, pixels)


def test_lossy_formats_are_close(tmp_path):
    yy, xx = np.mgrid[0:48, 0:64] / 64
    pixels = np.stack([xx, yy, (xx + yy) / 2], axis=2).astype(np.float32)
    for name in ("img.jpg", "img.jpeg", "img.webp"):
        write_image(tmp_path / name, pixels, bit_depth=16, quality=95)
        image = read_image(tmp_path / name)
        assert image.bit_depth == 8  # JPEG and WebP are 8-bit only
        assert image.pixels.shape == pixels.shape
        assert np.abs(image.pixels - pixels).mean() < 0.02, name


def test_jpeg_composites_alpha_over_white(tmp_path):
    pixels = np.zeros((16, 16, 4), np.float32)  # black...
    pixels[:, 8:, 3] = 1  # ...transparent on the left, opaque on the right
    write_image(tmp_path / "img.jpg", pixels)
    read = read_image(tmp_path / "img.jpg").pixels
    assert read.shape == (16, 16, 3)
    assert read[:, :4].min() > 0.95 and read[:, 12:].max() < 0.05

    write_image(tmp_path / "gray.jpg", pixels[..., [0, 3]])
    assert read_image(tmp_path / "gray.jpg").pixels.shape == (16, 16, 1)


def _png_with_orientation(png: bytes, orientation: int) -> bytes:
    """``png`` with an eXIf chunk holding an EXIF orientation tag, inserted after IHDR."""
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    body = exif.tobytes().removeprefix(b"Exif\0\0")
    crc = zlib.crc32(b"eXIf" + body)
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", crc)
    return png[:33] + chunk + png[33:]


def test_exif_orientation_is_applied(tmp_path, rng):
    pixels = np.zeros((8, 12, 3), np.uint8)
    pixels[0, 0] = 255  # a white top-left pixel
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored image must be turned 90° clockwise to display
    PILImage.fromarray(pixels).save(tmp_path / "rot.jpg", quality=100, exif=exif)
    read = read_image(tmp_path / "rot.jpg").pixels
    assert read.shape == (12, 8, 3)
    assert read[0, -1].min() > 0.8 and read[0, 0].max() < 0.2  # top-left went to top-right

    # 16-bit colour is decoded twice: both decodings must be turned.
    pixels16 = (levels(rng, 3, 16, 8, 12) * 65535).astype(np.uint16)
    write_image(tmp_path / "rot16.png", pixels16)
    png = (tmp_path / "rot16.png").read_bytes()
    (tmp_path / "rot16.png").write_bytes(_png_with_orientation(png, 6))
    image = read_image(tmp_path / "rot16.png")
    assert image.bit_depth == 16
    assert np.array_equal(image.pixels, np.rot90(pixels16, -1) / np.float32(65535))


def test_16bit_files_from_other_encoders_read_exactly(tmp_path, rng):
    cv2 = pytest.importorskip("cv2")
    pixels16 = (levels(rng, 4, 16) * 65535).astype(np.uint16)
    for channels in (3, 4):
        bgr = pixels16[..., [2, 1, 0, 3][:channels]]
        for name in ("cv.png", "cv.tif"):
            assert cv2.imwrite(str(tmp_path / name), bgr)
            read = read_image(tmp_path / name).pixels
            assert np.array_equal(np.rint(read * 65535), pixels16[..., :channels])
            # ...and ours are read by libpng and libtiff.
            write_image(tmp_path / name, pixels16[..., :channels])
            assert np.array_equal(cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED), bgr)


@pytest.mark.parametrize("mode, channels, bit_depth", [
    ("P", 3, 8), ("PA", 4, 8), ("1", 1, 8), ("CMYK", 3, 8), ("I;16", 1, 16), ("I", 1, 16),
    ("F", 1, 16), ("RGBa", 4, 8), ("La", 2, 8),
])
def test_pillow_modes_are_converted(mode, channels, bit_depth):
    pixels, depth = imageio._pixels(PILImage.new(mode, (5, 4)))
    assert pixels.shape == (4, 5, channels) and pixels.dtype == np.float32
    assert depth == bit_depth


def test_transparent_colour_becomes_alpha(tmp_path):
    palette = PILImage.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.save(tmp_path / "p.png", transparency=1)
    assert read_image(tmp_path / "p.png").pixels.shape == (4, 4, 4)
    PILImage.new("L", (4, 4), 7).save(tmp_path / "l.png", transparency=7)
    assert np.array_equal(read_image(tmp_path / "l.png").pixels[..., 1], np.zeros((4, 4)))


def test_integer_and_2d_pixels(tmp_path, rng):
    pixels = levels(rng, 3, 16)
    write_image(tmp_path / "a.png", np.rint(pixels * 65535).astype(np.uint16))
    assert read_image(tmp_path / "a.png").bit_depth == 16  # uint16 defaults to 16-bit
    assert np.array_equal(read_image(tmp_path / "a.png").pixels, pixels)
    gray = levels(rng, 1, 8)[..., 0]
    write_image(tmp_path / "b.png", np.rint(gray * 255).astype(np.uint8))
    assert np.array_equal(read_image(tmp_path / "b.png").pixels[..., 0], gray)


def test_float_pixels_are_clamped_and_rounded(tmp_path):
    pixels = np.array([[[-0.5], [1.5], [0.4 / 255], [1.6 / 255], [np.nan]]], np.float32)
    write_image(tmp_path / "c.png", pixels)
    read = read_image(tmp_path / "c.png").pixels[0, :, 0]
    assert np.rint(read * 255).tolist() == [0, 255, 0, 2, 0]
    write_image(tmp_path / "h.png", np.ones((2, 2, 3), np.float16), bit_depth=16)
    assert read_image(tmp_path / "h.png").pixels.min() == 1  # no float16 overflow at 65535


def test_metadata_is_carried_over(tmp_path, rng):
    srgb = icc("sRGB")
    like = Image(levels(rng, 3, 8, 10, 20), 16, srgb, (300.0, 150.0))
    for name, channels in [("a.png", 3), ("b.png", 4), ("c.tif", 3), ("d.jpg", 3), ("e.tif", 1)]:
        write_image(tmp_path / name, levels(rng, channels, 8, 40, 40), like=like)
        image = read_image(tmp_path / name)
        assert image.bit_depth == (8 if name.endswith(".jpg") else 16)  # like's depth
        # An RGB profile does not describe gray pixels: dropped.
        assert image.icc_profile == (srgb if channels > 1 else None)
        assert image.dpi == pytest.approx((600, 600), abs=0.01)  # print size kept
    assert image.pixels.shape == (40, 40, 1)


def test_icc_of_a_cmyk_source_is_dropped(tmp_path):
    cmyk = bytearray(icc("sRGB"))
    cmyk[16:20] = b"CMYK"
    PILImage.new("CMYK", (4, 4)).save(tmp_path / "c.jpg", icc_profile=bytes(cmyk))
    assert read_image(tmp_path / "c.jpg").icc_profile is None


def test_read_errors_name_the_file(tmp_path, rng):
    (tmp_path / "text.png").write_text("not an image at all\n")
    write_image(tmp_path / "whole.png", levels(rng, 3, 8, 64, 64))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    for name in ("text.png", "missing.png", "cut.png"):
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        message = str(info.value)
        assert str(tmp_path / name) in message and "\n" not in message


def test_unknown_extension_fails_before_any_work(tmp_path):
    target = tmp_path / "new" / "out.bmp"
    with pytest.raises(ImageWriteError, match=r"out\.bmp.*\.png"):
        write_image(target, np.zeros((2, 2, 3), np.float32))
    assert not target.parent.exists()


@pytest.mark.parametrize("pixels, bit_depth", [
    (np.zeros((2, 2, 5), np.float32), 8), (np.zeros((2, 2, 3), np.int32), 8),
    (np.zeros(4, np.float32), 8), (np.zeros((2, 2, 3), np.float32), 12),
])
def test_bad_pixels_or_depth(tmp_path, pixels, bit_depth):
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "out.png", pixels, bit_depth=bit_depth)
    assert list(tmp_path.iterdir()) == []


def _failing_save(self, fp, *args, **kwargs):
    fp.write(b"\x89PNG partial")
    raise OSError("disk full")


def _failing_encoder(*args):
    raise OSError("disk full")


@pytest.mark.parametrize("name, bit_depth, patch", [
    ("out.png", 8, (PILImage.Image, "save", _failing_save)),
    ("out.png", 16, (imageio.PngRowWriter, "write", _failing_encoder)),
    ("out.tif", 16, (imageio, "_tiff16", _failing_encoder)),
])
def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, name, bit_depth, patch):
    target = tmp_path / name
    target.write_bytes(b"old")
    monkeypatch.setattr(*patch)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_image(target, np.zeros((4, 4, 3), np.float32), bit_depth=bit_depth)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file
    assert target.read_bytes() == b"old"


def test_write_creates_folders_and_respects_umask(tmp_path):
    target = tmp_path / "a" / "b" / "out.png"
    write_image(target, np.zeros((2, 2, 3), np.float32))
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    assert target.stat().st_mode == reference.stat().st_mode  # not the 0600 of a temp file
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]


def test_list_images(tmp_path):
    names = ("b.PNG", "a.jpg", "c.jpeg", "d.webp", "e.tif", "f.tiff", "notes.txt", ".hidden.png")
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == [
        "a.jpg", "b.PNG", "c.jpeg", "d.webp", "e.tif", "f.tiff"]
    assert set(IMAGE_EXTENSIONS) == {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".heic",
                                     ".heif", ".avif"}
    with pytest.raises(ImageReadError, match="not a folder"):
        list_images(tmp_path / "a.jpg")


@pytest.mark.parametrize("name, bit_depth", [("o.tif", 8), ("o.tif", 16), ("o.png", 8),
                                             ("o.png", 16), ("o.jpg", 8), ("o.webp", 8)])
def test_full_disk_is_one_clear_error(tmp_path, monkeypatch, name, bit_depth):
    """/dev/full fails every write with ENOSPC, as a full disk does (libtiff: at its header)."""
    from contextlib import contextmanager

    @contextmanager
    def full_disk(target):
        with open("/dev/full", "wb", buffering=0) as fh:
            yield fh

    monkeypatch.setattr(imageio, "atomic_open", full_disk)
    with pytest.raises(ImageWriteError, match=f"{name}: cannot write image"):
        write_image(tmp_path / name, np.zeros((64, 64, 3), np.float32), bit_depth=bit_depth)


def test_read_only_folder_is_one_clear_error(tmp_path, monkeypatch):
    """On a read-only mount, creating the temporary file and removing it both fail (EROFS)."""
    import errno
    import pathlib

    from edgesr import fsutil

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    target = tmp_path / "o.png"
    target.write_bytes(b"old")
    monkeypatch.setattr(fsutil, "open", read_only, raising=False)
    monkeypatch.setattr(pathlib.Path, "unlink", read_only)
    with pytest.raises(ImageWriteError, match="o.png: cannot write image: .*Read-only"):
        write_image(target, np.zeros((4, 4, 3), np.float32))
    assert target.read_bytes() == b"old"


def _in_thread(call, seconds: float = 10.0):
    """``call()``'s exception (None if it returned); fails the test if it hangs."""
    import threading

    outcome = []

    def run():
        try:
            call()
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"hung for {seconds} s"
    return outcome[0]


@pytest.mark.parametrize("make, reason", [
    (lambda p: os.mkfifo(p), "not a regular file"),
    (lambda p: p.mkdir(), "not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
    (lambda p: p.symlink_to(p), "symbolic links"),
    (lambda p: p.symlink_to(p.parent / "gone.png"), "file not found"),
])
def test_what_is_not_a_regular_file_is_refused_without_hanging(tmp_path, make, reason):
    path = tmp_path / "x.png"
    make(path)
    error = _in_thread(lambda: read_image(path))
    assert isinstance(error, ImageReadError) and reason in str(error) and "x.png" in str(error)


def test_folder_listing_keeps_what_it_cannot_read_so_it_is_reported(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "dangling.png", "fifo.png",
                                                       "loop.png"]


def _raw_tiff(data: np.ndarray, *, planar: bool = False, sample_format: int = 1) -> bytes:
    """An uncompressed little-endian TIFF of HWC ``data`` (uint16 or float32), its samples
    interleaved or (``planar``) one strip per channel."""
    from PIL import TiffImagePlugin as t

    height, width, channels = data.shape
    little = data.astype(data.dtype.newbyteorder("<"))
    strips = ([np.ascontiguousarray(little[..., i]).tobytes() for i in range(channels)]
              if planar else [little.tobytes()])
    ifd = t.ImageFileDirectory_v2(prefix=b"II")
    tags = {t.IMAGEWIDTH: width, t.IMAGELENGTH: height, t.COMPRESSION: 1,
            t.BITSPERSAMPLE: (data.dtype.itemsize * 8,) * channels, t.SAMPLESPERPIXEL: channels,
            t.PHOTOMETRIC_INTERPRETATION: 2 if channels >= 3 else 1, t.ROWSPERSTRIP: height,
            t.PLANAR_CONFIGURATION: 2 if planar else 1, 339: (sample_format,) * channels,
            t.STRIPBYTECOUNTS: tuple(len(s) for s in strips),
            # Pillow adds the IFD's end to the strip offsets
            t.STRIPOFFSETS: tuple(sum(len(s) for s in strips[:i]) for i in range(len(strips)))}
    if channels == 4:
        tags[t.EXTRASAMPLES] = 2
    for tag, value in tags.items():
        ifd[tag] = value
    return b"II*\0" + struct.pack("<I", 8) + ifd.tobytes(8) + b"".join(strips)


@pytest.mark.parametrize("channels", [3, 4])
def test_planar_16bit_tiff_reads_exactly(tmp_path, rng, channels):
    data = rng.integers(0, 65536, (8, 10, channels), dtype=np.uint16)
    path = tmp_path / "planar.tif"
    path.write_bytes(_raw_tiff(data, planar=True))
    image = read_image(path)
    assert image.bit_depth == 16
    assert np.array_equal(np.round(image.pixels * 65535).astype(np.uint16), data)


def test_float_colour_tiff_is_named_for_what_it_is(tmp_path, rng):
    path = tmp_path / "float.tif"
    path.write_bytes(_raw_tiff(rng.random((8, 10, 3), dtype=np.float32), sample_format=3))
    with pytest.raises(ImageReadError, match="float.tif: a TIFF with 3 32-bit floating-point "
                                             "samples a pixel"):
        read_image(path)


@pytest.mark.parametrize("ext", [".jpg", ".webp", ".avif", ".heic"])
def test_quality_reaches_every_lossy_encoder(tmp_path, ext):
    from edgesr import heif
    from edgesr.errors import ImageWriteError

    try:
        heif.prepare(tmp_path / f"x{ext}", ImageWriteError)
    except ImageWriteError as exc:
        pytest.skip(f"no {ext} encoder here: {exc}")
    pixels = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    sizes = []
    for quality in (10, 90):
        write_image(tmp_path / f"q{quality}{ext}", pixels, quality=quality)
        sizes.append((tmp_path / f"q{quality}{ext}").stat().st_size)
    assert sizes[0] < sizes[1] / 2
