"""libedgesr (the C path) vs the Python ``Upscaler``, each over its own OpenVINO engine, on the
same model, tile, overlap, batch and image.

Two child processes, so each one's peak RSS is its alone:

- ``python``: ``Upscaler.upscale`` from 8-bit pixels to 8-bit pixels (``edgesr upscale`` minus
  file I/O);
- ``c``: ``edgesr_upscale_u8`` through ctypes, in a child that imports neither NumPy nor edgesr
  (its RSS before loading libedgesr is reported as ``base``, the interpreter's share).

Each child also times its path's engine alone, the floor the path stands on: the plan's tiles
(cut beforehand, untimed) through the same compiled model, infer requests and batch as the
path (``runtime.infer`` batch by batch; ``edgesr_infer_f32``). After one warm-up call of the
path (it compiles the tile shape; the peak RSS reported is taken here, before anything the
engine case needs exists) and one of the engine, the two alternate, ``--runs`` times each,
swapping which goes first every run, so a drift in machine speed weighs on both alike. "vs
engine" is the median of the paired ratios path/engine - 1: the path's own overhead. Model
loading and compilation are not timed. The C path's output must equal the Python path's
(sha256 of the pixels). Example::

    python benchmarks/bench_libedgesr.py --model x4.onnx --image photo.png --tile 256 --runs 5

libedgesr is taken from ``--lib``, else built with CMake into ``build/bench-libedgesr``.
"""

import argparse
import ctypes
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("python", "c")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def read_raw(path: Path) -> tuple[bytes, int, int, int]:
    """A ``W H C\\n`` header, then interleaved 8-bit pixels."""
    data = path.read_bytes()
    w, h, c = (int(v) for v in data[:32].split(b"\n", 1)[0].split())
    return data[data.index(b"\n") + 1:], w, h, c


def read_tiles(path: Path) -> tuple[bytes, tuple[int, ...]]:
    """An ``N C H W\\n`` header, then N float32 NCHW tiles (written by the python case)."""
    data = path.read_bytes()
    shape = tuple(int(v) for v in data[:64].split(b"\n", 1)[0].split())
    return data[data.index(b"\n") + 1:], shape


def measure(path, engine_setup, runs: int) -> dict:
    """Time ``path()`` and the engine alone (``engine_setup()`` returns its call), alternating;
    the peak RSS is taken after the path's warm-up, before ``engine_setup`` runs."""
    path()  # warm-up: compiles the tile shape, first-call allocations
    peak = rss_mb()
    engine = engine_setup()
    engine()
    times: dict[str, list[float]] = {"path": [], "engine": []}
    for run in range(runs):
        for name in (("engine", "path") if run % 2 == 0 else ("path", "engine")):
            fn = engine if name == "engine" else path
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {"times": times["path"], "engine_times": times["engine"], "peak_rss_mb": peak}


def case_c(args) -> dict:
    base = rss_mb()
    pixels, w, h, c = read_raw(args.raw)
    lib = ctypes.CDLL(str(args.lib))
    lib.edgesr_last_error.restype = ctypes.c_char_p
    session = ctypes.c_void_p()
    options = (f"backend=openvino;device={args.device};tile={args.tile};overlap={args.overlap};"
               f"threads={args.threads};batch={args.batch}")
    if lib.edgesr_session_create(str(args.model).encode(), options.encode(),
                                 ctypes.byref(session)):
        raise SystemExit(f"libedgesr: {lib.edgesr_last_error(None).decode()}")
    s = lib.edgesr_session_scale(session)
    src = ctypes.create_string_buffer(pixels, len(pixels))
    dst = ctypes.create_string_buffer(w * s * h * s * c)

    def check(status: int) -> None:
        if status:
            raise SystemExit(f"libedgesr: {lib.edgesr_last_error(None).decode()}")

    def path():
        check(lib.edgesr_upscale_u8(session, src, w, h, c, ctypes.c_size_t(w * c), dst,
                                    ctypes.c_size_t(w * s * c)))

    def engine_setup():
        data, (n, channels, th, tw) = read_tiles(args.tiles)
        tiles = (ctypes.c_float * (len(data) // 4)).from_buffer_copy(data)
        del data
        out = (ctypes.c_float * (n * channels * th * s * tw * s))()
        return lambda: check(lib.edgesr_infer_f32(session, tiles, n, th, tw, out))

    result = measure(path, engine_setup, args.runs)
    lib.edgesr_session_destroy(session)
    return {**result, "base_rss_mb": base, "sha256": hashlib.sha256(dst.raw).hexdigest()}


def case_python(args) -> dict:
    base = rss_mb()
    import numpy as np

    from edgesr.kernels.native import extract_tile, to_uint
    from edgesr.pipeline import open_runtime
    from edgesr.upscaler import Upscaler

    pixels, w, h, c = read_raw(args.raw)
    image = np.frombuffer(pixels, np.uint8).reshape(h, w, c)
    runtime = open_runtime(str(args.model), "openvino", device=args.device,
                           threads=args.threads).activate()
    upscaler = Upscaler(runtime, tile=args.tile, overlap=args.overlap, batch=args.batch or None)
    result: list[np.ndarray] = []
    n_tiles = []

    def path():
        result[:] = [to_uint(upscaler.upscale(image.astype("float32") / 255), 8)]

    def engine_setup():
        # the model's inputs as Upscaler.infer_tiles cuts them, in its order and batches
        chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255
        planes = upscaler.split_planes(chw, has_alpha=False)
        tiles = np.stack([extract_tile(planes[p], t.y, t.x, t.h, t.w, upscaler.pad_mode)
                          for t in upscaler.plan(h, w) for p in range(len(planes))])
        with open(args.tiles, "wb") as f:  # for the c case
            f.write(" ".join(map(str, tiles.shape)).encode() + b"\n")
            f.write(tiles.tobytes())
        n_tiles.append(len(tiles))
        batches = [tiles[i:i + upscaler.batch] for i in range(0, len(tiles), upscaler.batch)]
        return lambda: [runtime.infer(b) for b in batches]

    measured = measure(path, engine_setup, args.runs)
    runtime.deactivate()
    return {**measured, "base_rss_mb": base, "tiles": n_tiles[0], "batch": upscaler.batch,
            "sha256": hashlib.sha256(result[0].tobytes()).hexdigest()}


def build_lib() -> Path:
    build = ROOT / "build" / "bench-libedgesr"
    for command in (["cmake", "-S", ROOT, "-B", build, "-DEDGESR_LIB=ON", "-DEDGESR_PYTHON=OFF",
                     "-DEDGESR_TESTS=OFF", "-DEDGESR_CUDA=OFF",
                     f"-DPython_EXECUTABLE={sys.executable}"],
                    ["cmake", "--build", build, "--target", "edgesr", "--parallel", "2"]):
        subprocess.run(command, check=True, capture_output=True)
    return build / "libedgesr" / "libedgesr.so"


def overhead(r: dict) -> float:
    """Median of the paired ratios path / engine - 1."""
    return statistics.median(p / e - 1 for p, e in zip(r["times"], r["engine_times"], strict=True))


def report(args, rgb, results: dict) -> None:
    py, c = results["python"], results["c"]
    print(f"{args.model.name}, {args.image.name} {rgb.width}x{rgb.height}, tile {args.tile}, "
          f"overlap {args.overlap}, OpenVINO {args.device}, {py['tiles']} tiles, batch "
          f"{py['batch']}, {args.runs} runs (path and engine alternating)")
    print(f"{'case':13} {'median s':>9} {'min s':>8} {'vs engine':>10} {'peak RSS MB':>12} "
          f"{'base MB':>8}")
    for case in CASES:
        r = results[case]
        print(f"{case + ' engine':13} {statistics.median(r['engine_times']):9.4f} "
              f"{min(r['engine_times']):8.4f}")
        print(f"{case:13} {statistics.median(r['times']):9.4f} {min(r['times']):8.4f} "
              f"{overhead(r):+10.1%} {r['peak_rss_mb']:12.1f} {r['base_rss_mb']:8.1f}")
    time_ratio = statistics.median(c["times"]) / statistics.median(py["times"]) - 1
    print(f"c vs python: time {time_ratio:+.1%}, peak RSS "
          f"{c['peak_rss_mb'] - py['peak_rss_mb']:+.1f} MB; same pixels: "
          f"{'yes' if c['sha256'] == py['sha256'] else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="edgesr ONNX file or IR .xml")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "lowres.png")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=0, help="tiles per round (0: the engine's)")
    parser.add_argument("--threads", type=int, default=0, help="OpenVINO threads (0: default)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lib", type=Path, help="libedgesr.so (default: build it)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tiles", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        result = {"python": case_python, "c": case_c}[args.case](args)
        print(json.dumps(result))
        return

    from PIL import Image

    lib = args.lib or build_lib()
    with Image.open(args.image) as im, tempfile.TemporaryDirectory() as tmp:
        rgb = im.convert("RGB")
        raw = Path(tmp) / "image.raw"
        raw.write_bytes(f"{rgb.width} {rgb.height} 3\n".encode() + rgb.tobytes())
        results = {}
        for case in CASES:  # python first: it writes the tiles the c engine case runs
            child = [sys.executable, __file__, "--case", case, "--raw", raw, "--lib", lib,
                     "--model", args.model, "--tile", str(args.tile), "--overlap",
                     str(args.overlap), "--batch", str(args.batch), "--threads",
                     str(args.threads), "--device", args.device, "--runs", str(args.runs),
                     "--image", args.image, "--tiles", Path(tmp) / "tiles.f32"]
            done = subprocess.run(child, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"the {case} case failed:\n{done.stderr[-3000:]}")
            results[case] = json.loads(done.stdout.strip().splitlines()[-1])
    report(args, rgb, results)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
