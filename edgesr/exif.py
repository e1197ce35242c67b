"""EXIF carried from a source photo to its upscaled output (camera, date, GPS, ...).

The pixels edgesr writes are already upright (``read_image`` applies the EXIF orientation), so
the carried EXIF says orientation 1. The block is inserted into the written file without
re-encoding it: an APP1 segment in JPEG, an ``eXIf`` chunk in PNG, an ``EXIF`` chunk (with a
VP8X header) in WebP. TIFF, HEIC/HEIF and AVIF outputs are left without it.
"""

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

from edgesr.fsutil import write_bytes

ORIENTATION = 0x0112
_JPEG_MAX = 65533  # an APP1 segment's payload limit
_TIFF_HEADERS = (b"MM\x00*", b"II*\x00")


def read_exif(path: str | Path) -> bytes | None:
    """The EXIF block of an image file as TIFF bytes, orientation set to 1; None if it has
    none or it cannot be read."""
    try:
        with Image.open(path) as image:
            exif = image.getexif()
    except Exception:  # the pixels were readable; a bad EXIF block is dropped, not fatal
        return None
    if not exif:
        return None
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1
    data = exif.tobytes()
    data = data[6:] if data.startswith(b"Exif\x00\x00") else data
    return data if data[:4] in _TIFF_HEADERS else None


def carry_exif(source: str | Path, target: str | Path) -> bool:
    """Copy ``source``'s EXIF into the file at ``target`` (rewritten atomically); whether
    ``target`` now holds it."""
    exif = read_exif(source)
    if exif is None:
        return False
    target = Path(target)
    insert = _INSERTERS.get(target.suffix.lower())
    data = target.read_bytes()
    updated = insert(data, exif) if insert else None
    if updated is None:
        return False
    write_bytes(target, updated)
    return True


def _jpeg(data: bytes, exif: bytes) -> bytes | None:
    payload = b"Exif\x00\x00" + exif
    if data[:2] != b"\xff\xd8" or len(payload) > _JPEG_MAX:
        return None
    at = 2
    if data[2:4] == b"\xff\xe0":  # keep JFIF's APP0 first
        at = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:at] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[at:]


def _png(data: bytes, exif: bytes) -> bytes | None:
    at = data.find(b"IDAT") - 4
    if not data.startswith(b"\x89PNG") or at < 8 or b"eXIf" in data[:at]:
        return None
    chunk = b"eXIf" + exif
    return (data[:at] + struct.pack(">I", len(exif)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + data[at:])


def _webp(data: bytes, exif: bytes) -> bytes | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    body = data[12:]
    kind = body[:4]
    if kind == b"VP8X":
        flags = body[8] | 0x08
        body = body[:8] + bytes([flags]) + body[9:]
    elif kind in (b"VP8 ", b"VP8L"):
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            alpha = 0x10 if "A" in image.getbands() else 0
        header = bytes([0x08 | alpha, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (
            height - 1).to_bytes(3, "little")
        body = b"VP8X" + struct.pack("<I", len(header)) + header + body
    else:
        return None
    body += b"EXIF" + struct.pack("<I", len(exif)) + exif + (b"\x00" if len(exif) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


_INSERTERS = {".jpg": _jpeg, ".jpeg": _jpeg, ".png": _png, ".webp": _webp}
