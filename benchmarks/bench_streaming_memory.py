"""Peak RSS of the streaming upscale vs image size: it should stay flat.

    python benchmarks/bench_streaming_memory.py [--sizes 512 1024 2048] [--tile 128] [--whole]

Each size runs in a fresh process (so peak RSS is its own): a random uint8 RGB image of
``size`` x ``size`` is upscaled x4 by a tiny SRVGGNetCompact (random weights, PyTorch eager)
through ``edgesr.streaming.upscale_to_png``. Printed per size: output megapixels, seconds, the
process RSS after imports and model load, and its peak RSS. ``--whole`` runs
``Upscaler.upscale`` on the same inputs as the baseline whose memory grows with the image.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from edgesr.kernels import native
from edgesr.models import ModelDescriptor
from edgesr.models.compact import SRVGGNetCompact
from edgesr.runtimes.torch_runtime import TorchRuntime
from edgesr.streaming import upscale_to_png
from edgesr.upscaler import Upscaler


def run_one(size: int, tile: int, whole: bool) -> dict:
    """Upscale one image in this process; return timings and memory figures."""
    torch.manual_seed(0)
    model = SRVGGNetCompact(3, 3, num_feat=16, num_conv=2, upscale=4).eval()
    desc = ModelDescriptor(model=model, architecture="SRVGGNetCompact", scale=4, in_channels=3,
                           out_channels=3)
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    with TorchRuntime(desc) as runtime, tempfile.TemporaryDirectory() as tmp:
        upscaler = Upscaler(runtime, tile=tile, overlap=16)
        base = psutil.Process().memory_info().rss
        start = time.perf_counter()
        if whole:
            out = upscaler.upscale(image.astype(np.float32) / 255)
            native.to_uint(out, 8)
        else:
            upscale_to_png(upscaler, image, Path(tmp) / "out.png", compress_level=1)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"size": size, "out_mpix": (4 * size) ** 2 / 1e6, "seconds": seconds,
            "base_mb": base / 1e6, "peak_mb": peak / 1e6, "whole": whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048],
                        help="input sizes (output is 4x: 512 -> 4 MP, 1024 -> 16, 2048 -> 64)")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--whole", action="store_true", help="also run Upscaler.upscale")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one-whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.tile, args.one_whole)))
        return
    print(f"kernels: {native.BACKEND}, tile {args.tile}, x4 tiny Compact, uint8 RGB PNG out")
    print(f"{'mode':<10} {'input':>6} {'out MP':>7} {'seconds':>8} {'RSS base MB':>12} "
          f"{'peak RSS MB':>12}")
    for whole in ([False, True] if args.whole else [False]):
        for size in args.sizes:
            command = [sys.executable, __file__, "--one", str(size), "--tile", str(args.tile)]
            done = subprocess.run(command + (["--one-whole"] if whole else []),
                                  capture_output=True, text=True)
            if done.returncode:
                print(f"{'whole' if whole else 'streaming'} {size}: failed: "
                      f"{done.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(done.stdout)
            print(f"{'whole' if whole else 'streaming':<10} {size:>6} {r['out_mpix']:>7.1f} "
                  f"{r['seconds']:>8.1f} {r['base_mb']:>12.0f} {r['peak_mb']:>12.0f}")


if __name__ == "__main__":
    main()
