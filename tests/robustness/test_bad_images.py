"""Generated bad images through the folder pipeline: each gives one clear error line or a
correct output; never a traceback, a hang, a silently wrong output or a partial file."""

import random
import struct
import zlib

import numpy as np
from faults import count, run_bounded, tally

from edgesr.imageio import read_image, write_image
from edgesr.kernels.native import to_uint
from edgesr.limits import PixelLimits
from edgesr.pipeline import upscale_many
from edgesr.runtimes import create_runtime
from edgesr.upscaler import Upscaler

#: Small limits keep a mutated header's claim (e.g. 60000 x 40000) from costing minutes.
LIMITS = PixelLimits(input=128 * 128, output=256 * 256)


def _valid_images(rng: np.random.Generator, folder) -> list[tuple[str, bytes]]:
    """(name, bytes) of small valid images in every format, depth and channel count."""
    out = []
    for channels in (1, 2, 3, 4):
        pixels = rng.random((rng.integers(4, 24), rng.integers(4, 24), channels),
                            dtype=np.float32)
        for ext, depth in ((".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".jpg", 8),
                           (".webp", 8)):
            path = folder / f"c{channels}d{depth}{ext}"
            write_image(path, pixels, bit_depth=depth)
            out.append((path.name, path.read_bytes()))
    return out


def _png_with_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a PNG) with its IHDR claiming another size, CRC fixed so it is believed."""
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return data[:16] + bytes(ihdr) + crc + data[33:]


def _mutate(rng: random.Random, name: str, data: bytes) -> tuple[str, bytes]:
    """One seeded mutation of a valid image file."""
    kind = rng.choice(["truncate", "flip", "insert", "zero", "noise", "magic", "size", "swap"])
    if kind == "truncate":
        return kind, data[:rng.randrange(len(data))]
    if kind == "flip":
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        return kind, bytes(buf)
    if kind == "insert":
        at = rng.randrange(len(data))
        return kind, data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]
    if kind == "zero":
        return kind, b""
    if kind == "noise":
        return kind, rng.randbytes(rng.randint(1, 4096))
    if kind == "magic":
        return kind, data[:8] + rng.randbytes(rng.randint(0, 512))
    if kind == "size" and name.endswith(".png"):
        return kind, _png_with_size(data, rng.choice([0, 1, 7, 80_000_000, 1 << 31, 60000]),
                                    rng.choice([0, 1, 9, 40000, 1 << 31]))
    return "swap", data  # a valid image under another format's extension


def test_bad_images(tmp_path, tiny_x2):
    n = count(60, 1000)
    rng, nprng = random.Random(12), np.random.default_rng(12)
    (tmp_path / "valid").mkdir()
    valid = _valid_images(nprng, tmp_path / "valid")
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    pairs = []
    for i in range(n):
        name, data = rng.choice(valid)
        kind, data = _mutate(rng, name, data)
        ext = rng.choice([".png", ".jpg", ".tif", ".webp"]) if kind == "swap" else name[-4:]
        source = folder / f"{i:04d}-{kind}-{name[:-4]}{ext.replace('.tif', '.tiff')}"
        source.write_bytes(data)
        pairs.append((source, out / f"{source.stem}.png"))
    tracebacks, multi_line, wrong, partial, ok, errors = [], [], [], [], 0, 0
    with create_runtime("torch", tiny_x2) as runtime:
        upscaler = Upscaler(runtime, tile=16, overlap=4)

        def work():
            results = []
            for pair in pairs:
                try:
                    results += upscale_many(upscaler, [pair], lambda r: None, limits=LIMITS)
                except Exception as exc:  # noqa: BLE001 - counted: the figure to keep at 0
                    tracebacks.append(f"{pair[0].name}: {type(exc).__name__}: {exc}")
            return results

        results = run_bounded(work)
        for result in results:
            if result.error:
                errors += 1
                if "\n" in result.error.strip() or "Traceback" in result.error:
                    multi_line.append(result.error)
                if result.target is not None or (out / f"{result.source.stem}.png").exists():
                    partial.append(result.source.name)
                continue
            ok += 1
            source = read_image(result.source)
            expected = to_uint(upscaler.upscale(source.pixels), source.bit_depth)
            written = read_image(result.target)
            if not np.array_equal(to_uint(written.pixels, source.bit_depth), expected):
                wrong.append(result.source.name)
    litter = [p.name for p in out.iterdir() if p.name.startswith(".")] if out.exists() else []
    tally("bad-images", images=n, clear_errors=errors, correct_outputs=ok,
          tracebacks=len(tracebacks), multi_line=len(multi_line), wrong_outputs=len(wrong),
          partial_files=len(partial) + len(litter))
    assert not tracebacks and not multi_line and not wrong and not partial and not litter, (
        tracebacks[:5], multi_line[:5], wrong[:5], partial[:5], litter[:5])
    assert ok and errors  # the generator makes both kinds
