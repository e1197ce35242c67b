"""edgesr serve under a bounded loopback load, next to the Python API in the same run; and
edgesr batch on Ray Data with 1 vs 2 actors.

    python benchmarks/bench_serve.py [--requests 128] [--clients 1,4,16] [--size 64]
                                     [--images 64] [--actors 1,2] [--model FILE] [--no-ray]

The model is a tiny Compact x4 (random weights, ONNX Runtime) unless --model names one; the
image is a --size² synthetic PNG. For each client count, a fixed number of requests is sent
over keep-alive connections to a real uvicorn server on 127.0.0.1 (one worker, queue as long as
the client count, so nothing is refused unless something is wrong), and the same count of
``Session.upscale_file`` calls (decode, upscale, encode: the work a request does) runs from as
many threads in-process. Printed: requests/s, p50/p95/p99 latency and errors per row; then, per
actor count, a folder of --images copies run by ``edgesr.serve.ray_batch.run_on_ray`` (Ray Data,
one CPU and one backend thread per actor) on a local Ray instance: the start-up (until the first
image is back: actors started, models loaded, one image done), the images/s after it, and the
images/s of the whole run.
"""

import argparse
import json
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

import edgesr
from edgesr.profiling.timing import LatencyStats


def tiny_onnx(folder: Path) -> Path:
    """A tiny Compact x4 with seeded random weights, exported to ONNX."""
    import torch

    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import model_from_state_dict
    from edgesr.models.compact import SRVGGNetCompact

    torch.manual_seed(0)
    net = SRVGGNetCompact(3, 3, num_feat=16, num_conv=4, upscale=4).eval()
    return export_onnx(model_from_state_dict(net.state_dict()), folder / "tiny.onnx",
                       check=False).path


def ms(value: float | None) -> str:
    """A latency cell; percentiles with too few samples behind them print as n/a."""
    return f"{'n/a':>9}" if value is None else f"{value:>9.1f}"


def run_load(call, requests: int, clients: int) -> tuple[float, LatencyStats, int]:
    """(requests/s, latency stats, errors) of ``requests`` calls from ``clients`` threads."""
    def one(_):
        start = time.perf_counter()
        ok = call()
        return time.perf_counter() - start, ok

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    return (requests / wall, LatencyStats.from_seconds([s for s, _ in results]),
            sum(not ok for _, ok in results))


def bench_service(model: Path, image: Path, args) -> list[dict]:
    import threading

    import httpx

    from edgesr.serve.app import create_app
    from edgesr.serve.config import Limits, ServeConfig
    from edgesr.serve.server import ThreadedServer

    rows, data = [], image.read_bytes()
    clients = [int(c) for c in args.clients.split(",")]
    with edgesr.load(model, tile=args.tile, overlap=8) as session, \
            tempfile.TemporaryDirectory() as tmp:
        config = ServeConfig(work_dir=Path(tmp) / "work",
                             limits=Limits(queue_size=max(clients), workers=1))
        app = create_app(config, {"tiny": session})
        local = threading.local()

        def via_http() -> bool:
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=600)
            reply = local.client.post(f"{server.url}/v1/upscale", content=data)
            return reply.status_code == 200

        def via_api() -> bool:
            target = Path(tmp) / f"api-{threading.get_ident()}.png"
            session.upscale_file(image, target)
            return target.is_file()

        with ThreadedServer(app) as server:
            via_http()  # warm-up
            via_api()
            for count in clients:
                for name, call in (("http", via_http), ("api", via_api)):
                    rate, stats, errors = run_load(call, args.requests, count)
                    rows.append({"path": name, "clients": count, "requests": args.requests,
                                 "req_per_s": rate, "p50_ms": stats.p50_ms,
                                 "p95_ms": stats.p95_ms, "p99_ms": stats.p99_ms,
                                 "errors": errors})
                    cells = " ".join(ms(v) for v in (stats.p50_ms, stats.p95_ms, stats.p99_ms))
                    print(f"{name:<5} {count:>7} {args.requests:>8} {rate:>9.2f} {cells} "
                          f"{errors:>6}", flush=True)
    return rows


def bench_ray(model: Path, image: Path, args) -> list[dict]:
    import shutil

    import ray

    from edgesr.pipeline import plan_outputs
    from edgesr.serve.ray_batch import run_on_ray

    rows = []
    ray.init(num_cpus=max(int(a) for a in args.actors.split(",")), include_dashboard=False,
             log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "in"
            folder.mkdir()
            for i in range(args.images):
                shutil.copy(image, folder / f"img{i:03d}.png")
            for actors in (int(a) for a in args.actors.split(",")):
                pairs = plan_outputs(folder, Path(tmp) / f"out{actors}", "x4", None)
                back: list[float] = []
                start = time.perf_counter()
                results = run_on_ray(
                    pairs, model=str(model), actors=actors, tile=args.tile, overlap=8, threads=1,
                    on_result=lambda _, back=back: back.append(time.perf_counter()))
                wall = time.perf_counter() - start
                startup = back[0] - start
                after = (len(back) - 1) / (back[-1] - back[0]) if len(back) > 1 else None
                errors = sum(bool(r.error) for r in results)
                rows.append({"actors": actors, "images": len(pairs), "seconds": wall,
                             "startup_s": startup, "images_per_s_after_startup": after,
                             "images_per_s": len(pairs) / wall, "errors": errors})
                steady = "n/a" if after is None else f"{after:.2f}"
                print(f"ray   {actors:>7} {len(pairs):>8} start-up {startup:.1f} s, then "
                      f"{steady} images/s; whole run {len(pairs) / wall:.2f} images/s "
                      f"({wall:.1f} s), errors {errors}", flush=True)
    finally:
        ray.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model file (default: tiny Compact x4)")
    parser.add_argument("--requests", type=int, default=128,
                        help="requests per row (p99 needs >= 100)")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients per row")
    parser.add_argument("--size", type=int, default=64, help="input image side in pixels")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--images", type=int, default=64,
                        help="images in the Ray folder (enough that start-up does not dominate)")
    parser.add_argument("--actors", default="1,2", help="Ray actor counts")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray rows")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_onnx(Path(tmp))
        image = Path(tmp) / "input.png"
        rng = np.random.default_rng(0)
        Image.fromarray((rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)).save(
            image)
        print(f"model: {model.name}; image {args.size}x{args.size}; machine: "
              f"{platform.processor() or platform.machine()}")
        print(f"{'path':<5} {'clients':>7} {'requests':>8} {'req/s':>9} {'p50 ms':>9} "
              f"{'p95 ms':>9} {'p99 ms':>9} {'errors':>6}")
        report = {"service": bench_service(model, image, args)}
        if not args.no_ray:
            report["ray"] = bench_ray(model, image, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
