"""PNG writing, top to bottom in row blocks: 8- or 16-bit gray, gray+alpha, RGB or RGBA.

Used by ``imageio`` for 16-bit colour (Pillow has no pixel mode for it) and by ``streaming``,
which writes an image as its rows are finished.
"""

import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgesr.errors import ImageWriteError
from edgesr.fsutil import CloseOrAbort, StagedFile

_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_IDAT_BYTES = 1 << 20
_BLOCK_ROWS = 32  # rows filtered and compressed at a time


class PngRowWriter(CloseOrAbort):
    """Writes a PNG top to bottom from (rows, width, channels) uint8/uint16 blocks.

    ``target`` is a path or an open binary file. A path's file appears (renamed from a temporary
    name of its own, ``fsutil.temp_path``: concurrent writers of one target never share it) only
    when ``close`` has seen all ``height`` rows; a writer left early (an exception in a ``with``
    block) or failing to write (a full disk: ImageWriteError) leaves nothing. ``icc_profile``,
    ``dpi`` (x, y) and ``exif`` (TIFF-format bytes, ``exif.read_exif``) become iCCP, pHYs and
    eXIf chunks.
    With ``adaptive_filter`` each row gets the PNG filter that minimises its sum of absolute
    signed bytes (libpng's heuristic): about 10% smaller files of photos, and slower to write.
    """

    def __init__(self, target: str | os.PathLike | BinaryIO, width: int, height: int,
                 channels: int, bit_depth: int = 8, compress_level: int = 6, *,
                 icc_profile: bytes | None = None, dpi: tuple[float, float] | None = None,
                 exif: bytes | None = None, adaptive_filter: bool = False):
        is_file = hasattr(target, "write")
        self.name = getattr(target, "name", "PNG file") if is_file else target
        if channels not in _COLOUR_TYPE or bit_depth not in (8, 16) or width < 1 or height < 1:
            raise ImageWriteError(f"{self.name}: cannot write a {width}x{height} PNG with "
                                  f"{channels} channels at {bit_depth} bits")
        self.width, self.height, self.channels, self.bit_depth = width, height, channels, bit_depth
        self.rows, self.adaptive_filter = 0, adaptive_filter
        self._zip = zlib.compressobj(compress_level)
        self._pending = b""
        self._above = np.zeros((1, width * channels * bit_depth // 8), np.uint8)
        self._file, self._staged = target, None  # _staged: the temporary file of a path target
        if not is_file:
            self.path = Path(target)
            try:
                self._staged = StagedFile(self.path)
            except OSError as exc:
                raise ImageWriteError(f"cannot write {self.path}: {exc}") from None
            self._file = self._staged.file
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth,
                                         _COLOUR_TYPE[channels], 0, 0, 0), b"\x89PNG\r\n\x1a\n")
        if icc_profile:
            self._chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile))
        if dpi:
            self._chunk(b"pHYs", struct.pack(">IIB", *(round(d / 0.0254) for d in dpi), 1))
        if exif:
            self._chunk(b"eXIf", exif)

    def _chunk(self, kind: bytes, data: bytes, before: bytes = b"") -> None:
        """Write one chunk (after ``before``); a failed write drops the file (ImageWriteError)."""
        crc = struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
        try:
            self._file.write(before + struct.pack(">I", len(data)) + kind + data + crc)
        except OSError as exc:
            self.abort()
            raise ImageWriteError(f"cannot write {self.name}: {exc}") from None

    def _idat(self, data: bytes, final: bool = False) -> None:
        self._pending += data
        if len(self._pending) >= _IDAT_BYTES or (final and self._pending):
            self._chunk(b"IDAT", self._pending)
            self._pending = b""

    def write(self, rows: np.ndarray) -> None:
        """Append rows: (n, width, channels) (or (n, width) for grey) of the writer's depth."""
        dtype = np.uint8 if self.bit_depth == 8 else np.uint16
        rows = rows[..., None] if rows.ndim == 2 else rows
        if (rows.dtype != dtype or rows.ndim != 3 or rows.shape[1:] != (self.width, self.channels)
                or self.rows + len(rows) > self.height):
            raise ImageWriteError(f"{self.name}: rows {rows.dtype} {rows.shape} do not fit a "
                                  f"{self.width}x{self.height}x{self.channels} {dtype.__name__} "
                                  f"image with {self.rows} rows written")
        for start in range(0, len(rows), _BLOCK_ROWS):
            block = np.ascontiguousarray(rows[start:start + _BLOCK_ROWS],
                                         dtype=rows.dtype.newbyteorder(">"))
            data = block.view(np.uint8).reshape(len(block), -1)
            if self.adaptive_filter:
                lines = _filter(data, self._above, self.channels * self.bit_depth // 8)
                self._above = data[-1:].copy()
            else:
                lines = np.zeros((len(data), 1 + data.shape[1]), np.uint8)  # filter byte 0: none
                lines[:, 1:] = data
            self._idat(self._zip.compress(lines))
        self.rows += len(rows)

    def close(self) -> None:
        """Finish the file (and move a path's into place); an error if rows are missing."""
        if self.rows != self.height:
            self.abort()
            raise ImageWriteError(f"{self.name}: {self.rows} of {self.height} rows written")
        self._idat(self._zip.flush(), final=True)
        self._chunk(b"IEND", b"")
        if self._staged is not None:
            try:
                self._staged.commit()
            except OSError as exc:
                self.abort()
                raise ImageWriteError(f"cannot write {self.name}: {exc}") from None

    def abort(self) -> None:
        """Drop a path's partial file."""
        if self._staged is not None:
            self._staged.discard()


def _filter(rows: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """PNG scanlines of ``rows`` (uint8; ``above`` is the line before them), each prefixed by the
    filter type that minimises its sum of absolute signed bytes; arithmetic modulo 256."""
    n, width = rows.shape
    b = np.concatenate([above, rows[:-1]])  # up
    a, c = np.zeros_like(rows), np.zeros_like(rows)  # left, up-left
    a[:, bpp:], c[:, bpp:] = rows[:, :-bpp], b[:, :-bpp]
    ai, bi, ci = a.astype(np.int16), b.astype(np.int16), c.astype(np.int16)
    pa, pb, pc = np.abs(bi - ci), np.abs(ai - ci), np.abs(ai + bi - 2 * ci)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    candidates = np.empty((5, n, width), np.uint8)
    candidates[0] = rows
    np.subtract(rows, a, out=candidates[1])
    np.subtract(rows, b, out=candidates[2])
    np.subtract(rows, (a & b) + ((a ^ b) >> 1), out=candidates[3])  # floor((a + b) / 2)
    np.subtract(rows, paeth, out=candidates[4])
    cost = np.abs(candidates.view(np.int8)).view(np.uint8).sum(axis=2, dtype=np.uint32)
    best = cost.argmin(axis=0)
    lines = np.empty((n, width + 1), np.uint8)
    lines[:, 0], lines[:, 1:] = best, candidates[best, np.arange(n)]
    return lines
