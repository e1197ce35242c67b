"""libedgesr (the C path) vs the Python ``Upscaler`` on the same OpenVINO engine, tile and image.

Three cases, each in its own child process so its peak RSS is its alone:

- ``engine``: ``runtime.infer`` over exactly the tiles of the plan (cut beforehand, untimed): the
  engine's own time, the floor both paths stand on;
- ``python``: ``Upscaler.upscale`` from 8-bit pixels to 8-bit pixels (``edgesr upscale`` minus
  file I/O);
- ``c``: ``edgesr_upscale_u8`` through ctypes, in a child that imports neither NumPy nor edgesr
  (its RSS before loading libedgesr is reported as ``base``, the interpreter's share).

Times are the median and minimum of ``--runs`` calls after one warm-up call; model loading and
compilation are not timed. Example::

    python benchmarks/bench_libedgesr.py --model x4.onnx --image photo.png --tile 256 --runs 5

libedgesr is taken from ``--lib``, else built with CMake into ``build/bench-libedgesr``.
"""

import argparse
import ctypes
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("engine", "python", "c")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def read_raw(path: Path) -> tuple[bytes, int, int, int]:
    data = path.read_bytes()
    w, h, c = (int(v) for v in data[:32].split(b"\n", 1)[0].split())
    return data[data.index(b"\n") + 1:], w, h, c


def timed(fn, runs: int) -> list[float]:
    fn()  # warm-up: first-call allocations and lazy compilation
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def case_c(args) -> dict:
    base = rss_mb()
    pixels, w, h, c = read_raw(args.raw)
    lib = ctypes.CDLL(str(args.lib))
    lib.edgesr_last_error.restype = ctypes.c_char_p
    session = ctypes.c_void_p()
    options = f"backend=openvino;device={args.device};tile={args.tile};overlap={args.overlap};" \
              f"threads={args.threads}"
    if lib.edgesr_session_create(str(args.model).encode(), options.encode(),
                                 ctypes.byref(session)):
        raise SystemExit(f"libedgesr: {lib.edgesr_last_error(None).decode()}")
    s = lib.edgesr_session_scale(session)
    src = ctypes.create_string_buffer(pixels, len(pixels))
    dst = ctypes.create_string_buffer(w * s * h * s * c)

    def run():
        if lib.edgesr_upscale_u8(session, src, w, h, c, ctypes.c_size_t(w * c), dst,
                                 ctypes.c_size_t(w * s * c)):
            raise SystemExit(f"libedgesr: {lib.edgesr_last_error(None).decode()}")

    times = timed(run, args.runs)
    lib.edgesr_session_destroy(session)
    return {"times": times, "base_rss_mb": base}


def _python_setup(args):
    import numpy as np

    from edgesr.pipeline import open_runtime
    from edgesr.upscaler import Upscaler

    pixels, w, h, c = read_raw(args.raw)
    image = np.frombuffer(pixels, np.uint8).reshape(h, w, c)
    runtime = open_runtime(str(args.model), "openvino", device=args.device,
                           threads=args.threads).activate()
    return image, runtime, Upscaler(runtime, tile=args.tile, overlap=args.overlap)


def case_python(args) -> dict:
    from edgesr.kernels.native import to_uint

    base = rss_mb()
    image, runtime, upscaler = _python_setup(args)
    times = timed(lambda: to_uint(upscaler.upscale(image.astype("float32") / 255), 8), args.runs)
    runtime.deactivate()
    return {"times": times, "base_rss_mb": base}


def case_engine(args) -> dict:
    import numpy as np

    from edgesr.kernels.native import extract_tile

    base = rss_mb()
    image, runtime, upscaler = _python_setup(args)
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255
    # the model's inputs, as the Upscaler makes them from RGB: whole, or one channel each
    planes = [chw] if runtime.info.in_channels == 3 else [chw[i:i + 1] for i in range(3)]
    tiles = [extract_tile(np.ascontiguousarray(p), t.y, t.x, t.h, t.w)
             for t in upscaler.plan(*image.shape[:2]) for p in planes]
    batches = [np.stack(tiles[i:i + upscaler.batch])
               for i in range(0, len(tiles), upscaler.batch)]
    times = timed(lambda: [runtime.infer(b) for b in batches], args.runs)
    runtime.deactivate()
    return {"times": times, "base_rss_mb": base, "tiles": len(tiles)}


def build_lib() -> Path:
    build = ROOT / "build" / "bench-libedgesr"
    for command in (["cmake", "-S", ROOT, "-B", build, "-DEDGESR_LIB=ON", "-DEDGESR_PYTHON=OFF",
                     "-DEDGESR_TESTS=OFF", "-DEDGESR_CUDA=OFF",
                     f"-DPython_EXECUTABLE={sys.executable}"],
                    ["cmake", "--build", build, "--target", "edgesr", "--parallel", "2"]):
        subprocess.run(command, check=True, capture_output=True)
    return build / "libedgesr" / "libedgesr.so"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="edgesr ONNX file or IR .xml")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "lowres.png")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="OpenVINO threads (0: default)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lib", type=Path, help="libedgesr.so (default: build it)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        result = {"engine": case_engine, "python": case_python, "c": case_c}[args.case](args)
        print(json.dumps({**result, "peak_rss_mb": rss_mb()}))
        return

    from PIL import Image

    lib = args.lib or build_lib()
    with Image.open(args.image) as im, tempfile.TemporaryDirectory() as tmp:
        rgb = im.convert("RGB")
        raw = Path(tmp) / "image.raw"
        raw.write_bytes(f"{rgb.width} {rgb.height} 3\n".encode() + rgb.tobytes())
        results = {}
        for case in CASES:
            child = [sys.executable, __file__, "--case", case, "--raw", raw, "--lib", lib,
                     "--model", args.model, "--tile", str(args.tile), "--overlap",
                     str(args.overlap), "--threads", str(args.threads), "--device", args.device,
                     "--runs", str(args.runs), "--image", args.image]
            done = subprocess.run(child, capture_output=True, text=True, check=True)
            results[case] = json.loads(done.stdout.strip().splitlines()[-1])
    engine = statistics.median(results["engine"]["times"])
    print(f"{args.model.name}, {args.image.name} {rgb.width}x{rgb.height}, tile {args.tile}, "
          f"overlap {args.overlap}, OpenVINO {args.device}, {results['engine']['tiles']} tiles, "
          f"{args.runs} runs")
    print(f"{'case':8} {'median s':>9} {'min s':>8} {'vs engine':>10} {'peak RSS MB':>12} "
          f"{'base MB':>8}")
    for case in CASES:
        r = results[case]
        median = statistics.median(r["times"])
        print(f"{case:8} {median:9.4f} {min(r['times']):8.4f} {median / engine - 1:+10.1%} "
              f"{r['peak_rss_mb']:12.1f} {r['base_rss_mb']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
