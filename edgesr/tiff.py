"""TIFF writing, top to bottom in strips: 8- or 16-bit gray, gray+alpha, RGB or RGBA.

Used by ``streaming``, which writes an image as its rows are finished. Each strip is deflated
with the horizontal predictor as it fills; the directory (IFD) goes after the last strip and
the header points at it, so nothing but one strip is ever held. Classic TIFF: files up to 4 GB.
"""

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from edgesr.errors import ImageWriteError
from edgesr.fsutil import CloseOrAbort, StagedFile

_SHORT, _LONG, _RATIONAL, _UNDEFINED = 3, 4, 5, 7
_FORMATS = {_SHORT: "H", _LONG: "I", _RATIONAL: "II", _UNDEFINED: "B"}
_LIMIT = 2**32 - 1


class TiffStripWriter(CloseOrAbort):
    """Writes a TIFF to ``path`` from (rows, width, channels) uint8/uint16 blocks.

    The file appears (renamed from a temporary name of its own, ``fsutil.temp_path``) only when
    ``close`` has seen all ``height`` rows; a writer left early or failing to write leaves
    nothing (ImageWriteError). ``icc_profile`` and ``dpi`` (x, y) are stored. 16-bit gray+alpha
    is written as RGBA, as ``imageio`` does (Pillow cannot read it otherwise).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, channels: int,
                 bit_depth: int = 8, compress_level: int = 6, *, rows_per_strip: int = 32,
                 icc_profile: bytes | None = None, dpi: tuple[float, float] | None = None):
        self.path = Path(path)
        if channels not in (1, 2, 3, 4) or bit_depth not in (8, 16) or width < 1 or height < 1:
            raise ImageWriteError(f"{self.path}: cannot write a {width}x{height} TIFF with "
                                  f"{channels} channels at {bit_depth} bits")
        self.width, self.height, self.channels, self.bit_depth = width, height, channels, bit_depth
        self.rows, self.rows_per_strip, self.compress_level = 0, rows_per_strip, compress_level
        self.icc_profile, self.dpi = icc_profile, dpi
        self._gray_alpha16 = channels == 2 and bit_depth == 16
        self._samples = 4 if self._gray_alpha16 else channels
        self._pending: list[np.ndarray] = []
        self._offsets: list[int] = []
        self._counts: list[int] = []
        try:
            self._staged = StagedFile(self.path)
        except OSError as exc:
            raise ImageWriteError(f"cannot write {self.path}: {exc}") from None
        self._file = self._staged.file
        self._write(b"II*\0" + struct.pack("<I", 0))  # the IFD's offset is set by close()

    def _write(self, data: bytes) -> int:
        """Append ``data``; its offset in the file. A failed write drops the file."""
        try:
            at = self._file.tell()
            if at + len(data) > _LIMIT:
                raise OSError("over 4 GB, the most a TIFF holds; write PNG instead")
            self._file.write(data)
        except OSError as exc:
            self.abort()
            raise ImageWriteError(f"cannot write {self.path}: {exc}") from None
        return at

    def write(self, rows: np.ndarray) -> None:
        """Append rows: (n, width, channels) (or (n, width) for grey) of the writer's depth."""
        dtype = np.uint8 if self.bit_depth == 8 else np.uint16
        rows = rows[..., None] if rows.ndim == 2 else rows
        if (rows.dtype != dtype or rows.ndim != 3 or rows.shape[1:] != (self.width, self.channels)
                or self.rows + len(rows) > self.height):
            self.abort()
            raise ImageWriteError(f"{self.path}: rows {rows.dtype} {rows.shape} do not fit a "
                                  f"{self.width}x{self.height}x{self.channels} {dtype.__name__} "
                                  f"image with {self.rows} rows written")
        if self._gray_alpha16:
            rows = rows[..., [0, 0, 0, 1]]
        self._pending.append(rows)
        self.rows += len(rows)
        while sum(map(len, self._pending)) >= self.rows_per_strip:
            self._strip(self.rows_per_strip)
        if self.rows == self.height and self._pending:
            self._strip(sum(map(len, self._pending)))

    def _strip(self, n: int) -> None:
        """Deflate the first ``n`` pending rows into one strip (predictor 2: each sample minus
        the same sample of the pixel before it, modulo 2**bits)."""
        rows = np.concatenate(self._pending)
        strip, rest = rows[:n].astype(rows.dtype.newbyteorder("<")), rows[n:]
        self._pending = [rest] if len(rest) else []
        strip[:, 1:] -= rows[:n, :-1]
        data = zlib.compress(strip.tobytes(), self.compress_level)
        self._offsets.append(self._write(data))
        self._counts.append(len(data))

    def close(self) -> None:
        """Write the directory and move the file into place; an error if rows are missing."""
        if self.rows != self.height:
            self.abort()
            raise ImageWriteError(f"{self.path}: {self.rows} of {self.height} rows written")
        bits = (self.bit_depth,) * self._samples
        tags = {256: (_LONG, [self.width]), 257: (_LONG, [self.height]), 258: (_SHORT, bits),
                259: (_SHORT, [8]), 262: (_SHORT, [1 if self._samples <= 2 else 2]),
                273: (_LONG, self._offsets), 277: (_SHORT, [self._samples]),
                278: (_LONG, [self.rows_per_strip]), 279: (_LONG, self._counts),
                284: (_SHORT, [1]), 317: (_SHORT, [2])}
        if self._samples in (2, 4):
            tags[338] = (_SHORT, [2])  # unassociated alpha
        if self.dpi:
            tags[282], tags[283] = ((_RATIONAL, [round(d * 1000), 1000]) for d in self.dpi)
            tags[296] = (_SHORT, [2])  # inches
        if self.icc_profile:
            tags[34675] = (_UNDEFINED, list(self.icc_profile))
        self._write(b"\0" * (self._file.tell() % 2))  # the IFD starts on a word boundary
        ifd_at = self._file.tell()
        self._write(_ifd(tags, ifd_at))
        try:
            self._file.seek(4)
            self._file.write(struct.pack("<I", ifd_at))
            self._staged.commit()
        except OSError as exc:
            self.abort()
            raise ImageWriteError(f"cannot write {self.path}: {exc}") from None

    def abort(self) -> None:
        """Drop the partial file."""
        self._staged.discard()


def _ifd(tags: dict[int, tuple[int, list[int]]], at: int) -> bytes:
    """One IFD at file offset ``at``: 12-byte entries sorted by tag, values over 4 bytes after
    it (word aligned), then no next IFD."""
    entries, extra = b"", b""
    data_at = at + 2 + 12 * len(tags) + 4
    for tag in sorted(tags):
        kind, values = tags[tag]
        count = len(values) // 2 if kind == _RATIONAL else len(values)
        packed = struct.pack(f"<{len(values)}{_FORMATS[kind][0]}", *values)
        if len(packed) <= 4:
            field = packed.ljust(4, b"\0")
        else:
            field = struct.pack("<I", data_at + len(extra))
            extra += packed + b"\0" * (len(packed) % 2)
        entries += struct.pack("<HHI", tag, kind, count) + field
    return struct.pack("<H", len(tags)) + entries + b"\0\0\0\0" + extra
