"""Image files in and out: PNG, JPEG, WebP and TIFF; 8- or 16-bit; gray or colour, with alpha.

Pixels are HWC float32 in [0, 1] with 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels.
Pillow does the work except for 16-bit colour, for which it has no pixel mode: such files are
decoded by Pillow twice, once for the high and once for the low byte of every sample, and written
by ``edgesr.png.PngRowWriter`` or the small TIFF encoder at the end of this module. Outputs go to
a temporary file beside the target that is renamed into place, so a failed write never leaves a
partial image.
"""

import os
import re
import struct
import sys
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, TiffImagePlugin, UnidentifiedImageError

from edgesr import heif
from edgesr.errors import ImageReadError, ImageWriteError, first_line
from edgesr.fsutil import atomic_open, regular_file
from edgesr.kernels.native import to_uint
from edgesr.png import PngRowWriter

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
            ".tiff": "TIFF", **heif.FORMATS}
IMAGE_EXTENSIONS = tuple(_FORMATS)
"""File extensions (lower case) that ``list_images`` finds and ``write_image`` writes."""
QUALITY_FORMATS = ("JPEG", "WEBP", *dict.fromkeys(heif.FORMATS.values()))
"""Formats ``write_image``'s ``quality`` applies to."""


def image_format(path: str | os.PathLike) -> str | None:
    """The format ``write_image`` writes ``path`` in, from its extension (PNG, JPEG, WEBP,
    TIFF, HEIF, AVIF), or None for an unknown one."""
    return _FORMATS.get(Path(path).suffix.lower())

# Pillow modes that are read as other modes (alpha added where the file has a transparent colour).
_READ_AS = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "PA": "RGBA", "RGBA": "RGBA",
            "RGBa": "RGBA"}
# Raw (file) layouts of 16-bit colour that Pillow unpacks to 8 bits by keeping each sample's high
# byte; the same layout with the other byte order yields the low bytes.
_COLOR16 = re.compile(r"(RGBA|RGBX|RGB);16([BLN])")
_OTHER_ORDER = {"B": "L", "L": "B", "N": "B" if sys.byteorder == "little" else "L"}


@dataclass(frozen=True, eq=False)
class Image:
    """A decoded image and the metadata that ``write_image(like=...)`` carries over."""

    pixels: np.ndarray  # HWC float32 in [0, 1], C in (1, 2, 3, 4)
    bit_depth: int = 8  # of the source file: 8 or 16
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None  # (x, y)

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] in (2, 4)


def read_image(path: str | os.PathLike) -> Image:
    """Decode an image file with its EXIF orientation applied.

    Palette images become RGB(A), CMYK and other colour spaces RGB (naively, without colour
    management), bilevel images gray; a transparent colour becomes an alpha channel. 16-bit files
    and 32-bit integer ones give ``bit_depth`` 16, float ("F") ones are taken as [0, 1] and clipped.
    Raises ImageReadError, naming the file, if it is missing, not an image or damaged.
    """
    path = _regular_file(path)
    heif.prepare(path, ImageReadError)
    try:
        with PILImage.open(path) as src:
            rawmode = _rawmode(src.tile)
            info = dict(src.info)
            planar = _planar16(path, src)
            decoded = None if planar else ImageOps.exif_transpose(src)
        pixels, bit_depth = (_read_planar16(path, *planar) if planar else
                             _read16(path, rawmode, decoded) or _pixels(decoded))
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        tiff = _tiff_samples(path)
        raise ImageReadError(f"{path}: {tiff}, which Pillow cannot read; save it with 8- or "
                             "16-bit integer samples" if tiff else f"{path}: not an image (or "
                             "not a format Pillow can read)") from None
    except (OSError, SyntaxError, ValueError, EOFError, PILImage.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: cannot read image: {exc}") from exc
    dpi = info.get("dpi")
    dpi = (float(dpi[0]), float(dpi[1])) if dpi and min(dpi) > 0 else None
    icc = _icc_for(info.get("icc_profile"), pixels.shape[2])
    return Image(pixels, bit_depth, icc, dpi)


def read_size(path: str | os.PathLike) -> tuple[int, int, int]:
    """(height, width, channels) of an image file from its header, without decoding it;
    channels as ``read_image`` gives them (gray 1, colour 3, alpha one more)."""
    path = _regular_file(path)
    try:
        with warnings.catch_warnings():  # the caller checks the size against its own limit
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            src = PILImage.open(path)
        with src:
            width, height = src.size
            alpha = "A" in src.mode or "a" in src.mode or "transparency" in src.info
            gray = src.mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "F")
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image (or not a format Pillow can read)") from None
    except (OSError, SyntaxError, ValueError, EOFError, PILImage.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: cannot read image: {exc}") from exc
    return height, width, (1 if gray else 3) + alpha


def _regular_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a regular file (``fsutil.regular_file``), else an ImageReadError."""
    return regular_file(path, ImageReadError)


def write_image(path: str | os.PathLike, pixels: np.ndarray, *, bit_depth: int | None = None,
                like: Image | None = None, quality: int | None = None) -> None:
    """Encode HWC pixels (float in [0, 1], uint8 or uint16; 2-D is gray) to ``path``, atomically.

    The format follows the extension; missing folders are created. ``bit_depth`` (8 or 16)
    defaults to ``like``'s, else 16 for uint16 pixels, else 8; JPEG and WebP are always 8-bit.
    JPEG has no alpha: the image is composited over white. WebP stores gray as RGB. ``quality``
    (1-100) applies to JPEG (written with 4:4:4 chroma; default 95), WebP (default 95; 100
    means lossless), AVIF and HEIC (default: the encoder's). From ``like``
    come the ICC profile (when it fits gray or colour output) and the DPI, scaled with the pixel
    size so the print size stays the same. Raises ImageWriteError, leaving no file behind, if
    writing fails.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"{path}: unknown image extension {path.suffix!r} "
                              f"(use one of {', '.join(IMAGE_EXTENSIONS)})")
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if (pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4)
            or not (pixels.dtype.kind == "f" or pixels.dtype in (np.uint8, np.uint16))):
        raise ImageWriteError(f"{path}: expected HWC pixels with 1-4 channels, float, uint8 or "
                              f"uint16; got {pixels.dtype} {pixels.shape}")
    if bit_depth is None:
        bit_depth = like.bit_depth if like is not None else 16 if pixels.dtype == np.uint16 else 8
    if bit_depth not in (8, 16):
        raise ImageWriteError(f"{path}: bit depth must be 8 or 16, not {bit_depth}")
    heif.prepare(path, ImageWriteError)
    if fmt in ("JPEG", "WEBP", *heif.FORMATS.values()):
        bit_depth = 8
    if pixels.dtype.kind != "f":
        pixels = pixels.astype(np.float32) / np.iinfo(pixels.dtype).max
    if fmt == "JPEG" and pixels.shape[2] in (2, 4):
        pixels = np.clip(pixels, 0, 1)
        alpha = pixels[..., -1:]
        pixels = pixels[..., :-1] * alpha + (1 - alpha)
    data = to_uint(pixels, bit_depth)

    icc = dpi = None
    if like is not None:
        icc = _icc_for(like.icc_profile, data.shape[2])
        if like.dpi:
            dpi = (like.dpi[0] * data.shape[1] / like.pixels.shape[1],
                   like.dpi[1] * data.shape[0] / like.pixels.shape[0])
    _write_atomic(path, lambda f: _encode(f, fmt, data, icc, dpi, quality))


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (by extension, hidden files and folders skipped),
    sorted. Entries that are not regular files (FIFOs, dangling or looping links) stay in, so
    ``read_image`` reports them instead of a run passing them over in silence."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith(".") and not p.is_dir())


def _icc_for(icc: bytes | None, channels: int) -> bytes | None:
    """``icc`` if its colour space (header bytes 16-20) suits pixels of ``channels``, else None."""
    wanted = b"GRAY" if channels <= 2 else b"RGB "
    return icc if icc and icc[16:20] == wanted else None


# ---- reading


def _rawmode(tile: list) -> str:
    """The raw (file) pixel layout Pillow decodes from; '' if unknown."""
    args = tile[0][3] if tile else ""
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def _decode_as(path: Path, rawmode: str) -> np.ndarray:
    """Decode ``path`` with Pillow taking its pixel data to be in ``rawmode``, oriented by EXIF."""
    with PILImage.open(path) as src:
        tiles = []
        for tile in src.tile:  # a namedtuple from Pillow 11 on, a plain tuple before
            args = (rawmode, *tile[3][1:]) if isinstance(tile[3], tuple) else rawmode
            tiles.append(tile._replace(args=args) if hasattr(tile, "_replace") else
                         (*tile[:3], args))
        src.tile = tiles
        return np.asarray(ImageOps.exif_transpose(src))


def _read16(path: Path, rawmode: str, high: PILImage.Image) -> tuple[np.ndarray, int] | None:
    """Pixels of 16-bit colour (``high``: Pillow's 8-bit decoding) at full depth, else None."""
    if rawmode == "LA;16B":  # 16-bit gray+alpha PNG: 4 bytes a pixel, decoded unchanged as RGBA
        full = _decode_as(path, "RGBA").view(">u2")
    elif match := _COLOR16.fullmatch(rawmode):
        low = _decode_as(path, f"{match[1]};16{_OTHER_ORDER[match[2]]}")
        full = np.asarray(high).astype(np.uint16) << 8 | low
    else:
        return None
    return full.astype(np.float32) / 65535, 16


def _planar16(path: Path, src: PILImage.Image) -> tuple | None:
    """(tiles, byte order, size) of a 16-bit TIFF that stores each channel on its own plane
    (PlanarConfiguration 2), which Pillow decodes to garbage at 8 bits; None for other files."""
    tags = getattr(src, "tag_v2", None)
    if src.format != "TIFF" or tags is None or tags.get(284) != 2 or 16 not in tags.get(258, ()):
        return None
    if any(tile[0] != "raw" or tile[3][0] not in "RGBA" for tile in src.tile):
        raise ImageReadError(f"{path}: a compressed or non-RGB planar 16-bit TIFF; save it with "
                             "interleaved (contiguous) samples")
    return [(tile[3][0], tile[2], tile[1]) for tile in src.tile], tags._endian, src.size


def _read_planar16(path: Path, tiles: list, order: str, size: tuple[int, int]
                   ) -> tuple[np.ndarray, int]:
    """Pixels of an uncompressed planar 16-bit RGB(A) TIFF: each (band, offset, extents)
    tile is read straight from the file."""
    width, height = size
    bands = sorted({band for band, _, _ in tiles}, key="RGBA".index)
    planes = np.zeros((len(bands), height, width), np.uint16)
    data = path.read_bytes()
    for band, offset, (x0, y0, x1, y1) in tiles:
        count = (x1 - x0) * (y1 - y0)
        if offset + 2 * count > len(data):
            raise ImageReadError(f"{path}: cannot read image: truncated {band} plane")
        planes[bands.index(band), y0:y1, x0:x1] = np.frombuffer(
            data, f"{order}u2", count, offset).reshape(y1 - y0, x1 - x0)
    return planes.transpose(1, 2, 0).astype(np.float32) / 65535, 16


def _tiff_samples(path: Path) -> str | None:
    """What a TIFF that Pillow cannot open holds ("a TIFF with 3 32-bit floating-point
    samples a pixel"), from its first directory; None if it is no TIFF."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head[:4] not in (b"II*\0", b"MM\0*"):
                return None
            ifd = TiffImagePlugin.ImageFileDirectory_v2(head)
            fh.seek(ifd.next)
            ifd.load(fh)
        kind = {2: "signed integer", 3: "floating-point"}.get(ifd.get(339, (1,))[0], "integer")
        return f"a TIFF with {ifd.get(277, 1)} {ifd.get(258, (8,))[0]}-bit {kind} samples a pixel"
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return None


def _pixels(im: PILImage.Image) -> tuple[np.ndarray, int]:
    """HWC float32 pixels in [0, 1] and the bit depth of a decoded Pillow image."""
    if im.mode.startswith("I"):
        return np.clip(np.asarray(im), 0, 65535)[..., None].astype(np.float32) / 65535, 16
    if im.mode == "F":
        return np.clip(np.asarray(im), 0, 1)[..., None].astype(np.float32), 16
    mode = _READ_AS.get(im.mode, "RGB")
    if mode in ("L", "RGB") and "transparency" in im.info:
        mode += "A"
    array = np.asarray(im if im.mode == mode else im.convert(mode))
    return array.reshape(*array.shape[:2], -1).astype(np.float32) / 255, 8


# ---- writing


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` on a temporary file beside ``path``, then rename it to ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as f:
            write(f)
    # What Pillow's encoders raise (libtiff: RuntimeError when it cannot write its header).
    except (OSError, ValueError, RuntimeError, ImageWriteError) as exc:
        raise ImageWriteError(f"{path}: cannot write image: {first_line(exc)}") from exc


def _encode(f: BinaryIO, fmt: str, data: np.ndarray, icc: bytes | None,
            dpi: tuple[float, float] | None, quality: int | None) -> None:
    """Write uint8/uint16 HWC ``data`` to ``f`` as ``fmt``."""
    if data.dtype == np.uint16 and data.shape[2] > 1:
        if fmt == "PNG":
            height, width, channels = data.shape
            with PngRowWriter(f, width, height, channels, 16, icc_profile=icc, dpi=dpi,
                              adaptive_filter=True) as png:
                png.write(data)
        else:
            f.write(_tiff16(data, icc, dpi))
        return
    options: dict = {"icc_profile": icc} if icc else {}
    if dpi and fmt != "WEBP":
        options["dpi"] = dpi
    if fmt == "JPEG":
        options.update(quality=quality or 95, subsampling=0)
    elif fmt == "WEBP":
        quality = quality or 95
        options.update(quality=quality, lossless=quality == 100, exact=quality == 100)
    elif fmt in heif.FORMATS.values() and quality is not None:
        options["quality"] = quality
    elif fmt == "TIFF":
        options["compression"] = "tiff_adobe_deflate"
    PILImage.fromarray(data[..., 0] if data.shape[2] == 1 else data).save(f, fmt, **options)


def _tiff16(data: np.ndarray, icc: bytes | None, dpi: tuple[float, float] | None) -> bytes:
    """A 16-bit RGB or RGBA TIFF file (deflate, horizontal predictor); gray+alpha is written
    as RGBA, since Pillow cannot read 16-bit gray+alpha TIFF."""
    if data.shape[2] == 2:
        data = data[..., [0, 0, 0, 1]]
    height, width, channels = data.shape
    deltas = data.astype("<u2")
    deltas[:, 1:] -= data[:, :-1]  # predictor 2, modulo 2**16
    strip = zlib.compress(deltas.tobytes(), 6)
    t = TiffImagePlugin
    tags = {t.IMAGEWIDTH: width, t.IMAGELENGTH: height, t.BITSPERSAMPLE: (16,) * channels,
            t.COMPRESSION: 8, t.PHOTOMETRIC_INTERPRETATION: 2, t.STRIPOFFSETS: 0,
            t.SAMPLESPERPIXEL: channels, t.ROWSPERSTRIP: height, t.STRIPBYTECOUNTS: len(strip),
            t.PLANAR_CONFIGURATION: 1, t.PREDICTOR: 2}
    if channels == 4:
        tags[t.EXTRASAMPLES] = 2  # unassociated alpha
    if icc:
        tags[t.ICCPROFILE] = icc
    if dpi:
        tags.update({t.X_RESOLUTION: dpi[0], t.Y_RESOLUTION: dpi[1], t.RESOLUTION_UNIT: 2})
    ifd = t.ImageFileDirectory_v2(prefix=b"II")
    for tag, value in tags.items():
        ifd[tag] = value
    # Header, IFD at offset 8, then the strip: Pillow adds the IFD's end to the strip offset.
    return b"II*\0" + struct.pack("<I", 8) + ifd.tobytes(8) + strip
