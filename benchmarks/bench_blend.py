"""Tile-blend kernels at 4K output: native (C++) vs the NumPy reference, side by side in one run.

    python benchmarks/bench_blend.py [--height 2160 --width 3840 --scale 4 --tile 256]

The workload is the tiler's: plan tiles over the input, extract each (reflect padding), accumulate
each upscaled tile with its window, normalise, convert to uint8. Per step it prints the best of
``--repeat`` times for each backend, the speed-up, and the native kernel's achieved bandwidth
(bytes it must read and write / time) next to a plain memcpy (``np.copyto``) of as many bytes.
With ``--model-tile`` it also times SRVGGNetCompact (realesr-general-x4v3 size, random weights)
on one tile and reports the blend's share of the end-to-end time (extrapolated to every tile).
"""

import argparse
import os
import time

import numpy as np
import torch

from edgesr.kernels import native
from edgesr.kernels.blend import tile_weight
from edgesr.models.compact import SRVGGNetCompact
from edgesr.tiling import plan_tiles

STEPS = ("extract", "accumulate", "normalize", "to_uint8")


def run_steps(kernels, image, tiles, upscaled, weights, scale, times):
    """One pass of the blend through ``kernels``; add each step's seconds to ``times``."""
    c, height, width = image.shape
    canvas = np.zeros((c, height * scale, width * scale), np.float32)
    weight_sum = np.zeros(canvas.shape[1:], np.float32)
    t0 = time.perf_counter()
    for t in tiles:
        kernels.extract_tile(image, t.y, t.x, t.h, t.w, "reflect")
    t1 = time.perf_counter()
    for t in tiles:
        vh, vw = t.valid_h * scale, t.valid_w * scale
        kernels.accumulate(canvas, weight_sum, upscaled[:, :vh, :vw], weights[t.overlap, vh, vw],
                           t.y * scale, t.x * scale)
    t2 = time.perf_counter()
    out = kernels.normalize(canvas, weight_sum)
    t3 = time.perf_counter()
    pixels = kernels.to_uint(out, 8)
    t4 = time.perf_counter()
    for step, seconds in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
        times[step] = min(times.get(step, np.inf), seconds)
    return pixels


def bytes_moved(tiles, c, out_hw, scale):
    """Bytes each step must read + write at least (float32 = 4, uint8 = 1)."""
    tile_px = sum(t.h * t.w for t in tiles)
    acc_px = sum(t.valid_h * t.valid_w for t in tiles) * scale * scale
    out_px = out_hw[0] * out_hw[1]
    return {"extract": 2 * 4 * c * tile_px,
            "accumulate": acc_px * 4 * (c + 1 + 2 * c + 2),  # tile, weight, canvas rw, sum rw
            "normalize": out_px * 4 * (2 * c + 1),
            "to_uint8": out_px * c * 5}


def memcpy_gbps(nbytes: int, repeat: int) -> float:
    """GB/s of ``ndarray.copy`` moving ``nbytes`` (read + write; into fresh memory, as the
    kernels write their outputs)."""
    src = np.ones(max(1, nbytes // 8), np.float32)
    best = min(_timed(src.copy) for _ in range(repeat))
    return 2 * src.nbytes / best / 1e9


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def model_seconds(tile: int, scale: int) -> float:
    model = SRVGGNetCompact(3, 3, num_feat=64, num_conv=32, upscale=scale).eval()
    x = torch.rand(1, 3, tile, tile)
    with torch.inference_mode():
        model(x)
        return _timed(model, x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=2160, help="output height")
    parser.add_argument("--width", type=int, default=3840, help="output width")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", type=int, default=256, help="tile size in input pixels")
    parser.add_argument("--overlap", type=int, default=32, help="overlap in input pixels")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model-tile", action="store_true",
                        help="also time a Compact model on one tile: blend share of end-to-end")
    args = parser.parse_args()
    s, c = args.scale, args.channels
    height, width = args.height // s, args.width // s
    rng = np.random.default_rng(0)
    image = rng.random((c, height, width), dtype=np.float32)
    tiles = plan_tiles(height, width, args.tile, args.overlap)
    upscaled = rng.random((c, args.tile * s, args.tile * s), dtype=np.float32)
    weights = {(t.overlap, t.valid_h * s, t.valid_w * s):
               tile_weight(t.valid_h * s, t.valid_w * s, tuple(o * s for o in t.overlap))
               for t in tiles}
    backends = [native.load("numpy")]
    if native._ext is not None:
        backends.append(native.load("native"))
    results, outputs = {}, {}
    for _ in range(args.repeat):
        for kernels in backends:
            times = results.setdefault(kernels.name, {})
            outputs[kernels.name] = run_steps(kernels, image, tiles, upscaled, weights, s, times)
    moved = bytes_moved(tiles, c, (height * s, width * s), s)
    copy = memcpy_gbps(max(moved.values()), args.repeat)
    print(f"{c}x{height}x{width} -> {height * s}x{width * s}, {len(tiles)} tiles of {args.tile} "
          f"(overlap {args.overlap}), {os.cpu_count()} CPUs, best of {args.repeat}")
    if len(outputs) == 2:
        print(f"native output identical to numpy: {np.array_equal(*outputs.values())}")
    print(f"{'step':<11} {'numpy ms':>9} {'native ms':>10} {'speed-up':>9} {'native GB/s':>12} "
          f"{'memcpy GB/s':>12}")
    for step in STEPS + ("total",):
        ref = results["numpy"]
        nat = results.get("native", {})
        t_ref = sum(ref.values()) if step == "total" else ref[step]
        t_nat = (sum(nat.values()) if step == "total" else nat[step]) if nat else float("nan")
        nbytes = sum(moved.values()) if step == "total" else moved[step]
        print(f"{step:<11} {t_ref * 1e3:>9.1f} {t_nat * 1e3:>10.1f} {t_ref / t_nat:>8.1f}x "
              f"{nbytes / t_nat / 1e9:>12.2f} {copy:>12.2f}")
    if args.model_tile:
        infer = model_seconds(args.tile, s) * len(tiles)
        for name, times in results.items():
            blend = sum(times.values())
            print(f"{name}: blend {blend:.3f} s of {blend + infer:.1f} s end-to-end "
                  f"(Compact 64x32, {len(tiles)} tiles) = {100 * blend / (blend + infer):.2f} %")


if __name__ == "__main__":
    main()
