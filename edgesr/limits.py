"""Pixel limits: an image too large to upscale in memory is refused from its header, before a
byte of it is decoded, with the memory it would need in the message.

A x4 model's output has 16 times the input's pixels, and an in-memory upscale holds it several
times over in float32 (``streaming.whole_image_bytes``): a 47 KB PNG can ask for gigabytes. A
streamed upscale (PNG or TIFF rows written as they finish) holds a band of rows instead, so its
default output limit is higher: what it guards there is time and disk, not memory.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from edgesr.errors import EdgesrError

#: Defaults: 100 Mpx in (Pillow's decompression-bomb error is at 179 Mpx); out, 256 Mpx held in
#: memory (a 16384 x 16384 image; a 12 Mpx photo x4 is 192 Mpx) and 1 Gpx streamed (a 62 Mpx
#: photo x4; a few GB of PNG).
DEFAULT_INPUT_PIXELS = 100_000_000
DEFAULT_OUTPUT_PIXELS = 256_000_000
DEFAULT_STREAMED_OUTPUT_PIXELS = 1_000_000_000


class PixelLimitError(EdgesrError):
    """An image has more input or output pixels than the limit allows."""


def parse_pixels(text: str) -> int:
    """A pixel count from ``64M``, ``1.5G``, ``1000`` or ``8000x8000``; 0 means no limit."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*|\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", text)
    if not match:
        raise EdgesrError(f"not a pixel count: {text!r} (examples: 64M, 8000x8000, 0 for none)")
    if match[1]:
        return int(match[1]) * int(match[2])
    return round(float(match[3]) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[match[4].upper()])


@dataclass(frozen=True, kw_only=True)
class PixelLimits:
    """Most ``input`` pixels an image may have and most ``output`` pixels its upscale may have
    (the larger of the native-scale and the resized result); 0 turns a limit off; ``output``
    None: ``DEFAULT_OUTPUT_PIXELS`` in memory, ``DEFAULT_STREAMED_OUTPUT_PIXELS`` streamed."""

    input: int = DEFAULT_INPUT_PIXELS
    output: int | None = None

    def check(self, source: Path, height: int, width: int, out_size: tuple[int, int], *,
              channels: int, scale: int, stream: bool) -> None:
        """Raise PixelLimitError naming ``source``, its size and the memory it would need."""
        p_in, p_out = height * width, out_size[0] * out_size[1]
        output = self.output
        if output is None:
            output = DEFAULT_STREAMED_OUTPUT_PIXELS if stream else DEFAULT_OUTPUT_PIXELS
        for kind, pixels, limit in (("input", p_in, self.input), ("output", p_out, output)):
            if limit and pixels > limit:
                need = memory_needed(height, width, out_size, channels=channels, scale=scale,
                                     stream=stream)
                raise PixelLimitError(
                    f"{source}: {width}x{height} gives {pixels} {kind} pixels, over the limit "
                    f"{limit} (--max-{kind}-pixels); upscaling it would need about "
                    f"{need / 1e9:.1f} GB of memory")


def memory_needed(height: int, width: int, out_size: tuple[int, int], *, channels: int,
                  scale: int, stream: bool) -> float:
    """About the bytes an upscale of a ``height`` x ``width`` image file takes, decoding
    included: streamed (the input's copies and a band of 256-pixel tiles) or in memory
    (``streaming.whole_image_bytes``)."""
    from edgesr.streaming import whole_image_bytes  # lazily: the CLI reads the defaults

    p_in = height * width
    decoded = p_in * channels * 5  # Pillow's 8-bit decoding and the float32 pixels
    if stream:
        return decoded + p_in * 8 * channels + 256 * scale * width * scale * 4 * (channels + 1)
    return decoded + whole_image_bytes(height, width, scale=scale, channels=channels,
                                       lanes=channels, out_size=out_size)


DEFAULT_LIMITS = PixelLimits()
