"""How close tiled output comes to whole-image output, by tile size, overlap and blend window.

    python benchmarks/bench_tiling_fidelity.py IMAGE [IMAGE ...] [--model realesrgan-x4plus]
        [--backend torch] [--tile 128 256] [--overlap 32 64] [--blend hann8 linear]

For each tile size and overlap, every image is centre-cropped to ``2 * tile - overlap`` pixels a
side, so that two tiles per axis overlap by exactly the overlap asked (on other sizes tiles are
spread evenly and overlap more). Prints PSNR(tiled, untiled) on the float output before rounding:
the figure behind README's tiling table. Images smaller than a crop are skipped with a line.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from edgesr.fidelity import psnr
from edgesr.imageio import read_image
from edgesr.pipeline import open_runtime
from edgesr.upscaler import Upscaler


def centre_crop(pixels: np.ndarray, size: int) -> np.ndarray | None:
    """The centre size x size crop of an HWC image, or None if it is smaller."""
    h, w = pixels.shape[:2]
    if min(h, w) < size:
        return None
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(pixels[top:top + size, left:left + size, :3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", default=None, help="model file or bundled name")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--tile", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--overlap", type=int, nargs="+", default=[32])
    parser.add_argument("--blend", nargs="+", default=["hann8", "linear"])
    args = parser.parse_args()

    with open_runtime(args.model, args.backend) as runtime:
        print(f"model: {args.model or 'default'} on {runtime.name}")
        print("image | crop | tile | overlap | blend | PSNR(tiled, untiled) dB")
        for path in args.images:
            pixels = read_image(path).pixels
            for tile in args.tile:
                for overlap in args.overlap:
                    size = 2 * tile - overlap
                    crop = centre_crop(pixels, size)
                    if crop is None:
                        print(f"{path.name}: smaller than {size}² (tile {tile}, overlap "
                              f"{overlap}); skipped")
                        continue
                    start = time.perf_counter()
                    whole = Upscaler(runtime, tile=0).upscale(crop)
                    seconds = time.perf_counter() - start
                    for blend in args.blend:
                        tiled = Upscaler(runtime, tile=tile, overlap=overlap, blend=blend)
                        print(f"{path.name} | {size}² | {tile} | {overlap} | {blend} | "
                              f"{psnr(tiled.upscale(crop), whole):.2f}   (whole image "
                              f"{seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
