"""Pixel limits: an image too large to upscale in memory is refused from its header, before a
byte of it is decoded, with the memory it would need in the message.

A x4 model's output has 16 times the input's pixels, and an in-memory upscale holds it several
times over in float32 (``streaming.whole_image_bytes``): a 47 KB PNG can ask for gigabytes.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from edgesr.errors import EdgesrError

#: Defaults: 100 Mpx in (Pillow's decompression-bomb error is at 179 Mpx), 256 Mpx out
#: (a 16384 x 16384 image; a 12 Mpx photo x4 is 192 Mpx).
DEFAULT_INPUT_PIXELS = 100_000_000
DEFAULT_OUTPUT_PIXELS = 256_000_000


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
    (the larger of the native-scale and the resized result); 0 turns a limit off."""

    input: int = DEFAULT_INPUT_PIXELS
    output: int = DEFAULT_OUTPUT_PIXELS

    def check(self, source: Path, height: int, width: int, out_size: tuple[int, int], *,
              channels: int, scale: int, stream: bool) -> None:
        """Raise PixelLimitError naming ``source``, its size and the memory it would need."""
        from edgesr.streaming import whole_image_bytes  # lazily: the CLI reads the defaults

        p_in, p_out = height * width, out_size[0] * out_size[1]
        decoded = p_in * channels * 5  # Pillow's 8-bit decoding and the float32 pixels
        if stream:  # the input's copies and a band of 256-pixel tiles
            need = decoded + p_in * 8 * channels + 256 * scale * width * scale * 4 * (channels + 1)
        else:
            need = decoded + whole_image_bytes(height, width, scale=scale, channels=channels,
                                               lanes=channels, out_size=out_size)
        for kind, pixels, limit in (("input", p_in, self.input), ("output", p_out, self.output)):
            if limit and pixels > limit:
                raise PixelLimitError(
                    f"{source}: {width}x{height} gives {pixels} {kind} pixels, over the limit "
                    f"{limit} (--max-{kind}-pixels); upscaling it would need about "
                    f"{need / 1e9:.1f} GB of memory")


DEFAULT_LIMITS = PixelLimits()
