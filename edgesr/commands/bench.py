"""``edgesr bench``: latency, throughput, FLOPs and fidelity per backend × precision × tile."""

import argparse
import contextlib
import json
from pathlib import Path

from edgesr.commands.jsonout import add_json_option, stdout_to_stderr, write_stdout
from edgesr.errors import EdgesrError


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 128x96, got {text!r}") from None
    return height, width


def register(sub) -> None:
    bench = sub.add_parser(
        "bench", help="profile a model on this machine: backends x precisions x tile sizes",
        description="Time a model per tile and end to end on each backend and precision, next "
        "to the PyTorch eager FP32 baseline; print a table, optionally write report.json and "
        "latency.png.")
    bench.add_argument("-m", "--model", help="checkpoint, ncnn .param, .onnx or bundled model "
                       "name (default: realesrgan-x4plus)")
    bench.add_argument("-b", "--backends", type=_names, default=None,
                       help="comma-separated backends (default: every registered backend)")
    bench.add_argument("-p", "--precisions", type=_names, default=("fp32",),
                       help="comma-separated precisions, each NAME or NAME=MODEL_FILE (a "
                       "quantized model), e.g. fp32,bf16,int8=x4_int8.onnx (default: fp32)")
    bench.add_argument("--tiles", type=_ints, default=(32, 64),
                       help="tile sizes in input pixels (default: 32,64)")
    bench.add_argument("--batches", type=_ints, default=(1,), help="batch sizes (default: 1)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed runs first (default: 1)")
    bench.add_argument("--runs", type=int, default=3, help="timed runs per tile (default: 3; "
                       "p95 needs >= 20 and p99 >= 100)")
    bench.add_argument("-t", "--duration", type=float, default=None, metavar="SECONDS",
                       help="time each tile row for SECONDS (at least --runs runs), as "
                       "benchmark_app -t")
    bench.add_argument("--image", help="image for the end-to-end run (default: synthetic)")
    bench.add_argument("--image-size", type=_size, default=(64, 64),
                       help="size of the synthetic end-to-end image, WxH (default: 64x64)")
    bench.add_argument("--overlap", type=int, default=8, help="end-to-end tile overlap")
    bench.add_argument("--consistency-downsample", choices=("bicubic", "area"),
                       default="bicubic", help="downscaling for the consistency score")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads for the backends")
    bench.add_argument("-O", "--option", action="append", default=[], metavar="BACKEND:KEY=VALUE",
                       help="extra backend option, a field of the backend's config, e.g. "
                       "onnxruntime:graph_optimization=all or ncnn:threads=2 (repeatable)")
    bench.add_argument("--no-isolate", dest="isolate", action="store_false",
                       help="run every case in this process, not each in its own (quicker to "
                       "start, easier to debug; a case's peak RSS then includes what earlier "
                       "cases left)")
    bench.add_argument("-o", "--out", help="folder for report.json and latency.png")
    bench.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                       help="show the change between two reports and exit")
    add_json_option(bench, "print the report (as report.json holds it) as one JSON document")
    bench.set_defaults(func=run)


def parse_options(items: list[str]) -> dict[str, dict]:
    """``["ort:key=value", ...]`` → ``{"ort": {"key": value}}`` (ints, floats, bools parsed)."""
    options: dict[str, dict] = {}
    for item in items:
        backend, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not (sep and eq and backend and key):
            raise EdgesrError(f"--option {item!r}: expected BACKEND:KEY=VALUE")
        options.setdefault(backend, {})[key] = _value(value)
    return options


def check_options(options: dict[str, dict], backends: tuple[str, ...]) -> None:
    """EdgesrError unless every ``-O`` option names a benchmarked backend (or a baseline one:
    see ``runner.baseline_case``) and a value its config accepts (a backend whose library is
    missing is left to its case)."""
    from edgesr.errors import BackendUnavailableError
    from edgesr.runtimes.registry import config_for, entry

    for backend, values in options.items():
        # an unknown backend: an error naming the known ones
        if backend not in backends and not entry(backend).baseline:
            raise EdgesrError(f"-O {backend}:...: {backend!r} is not benchmarked (-b "
                              f"{','.join(backends)})")
        try:
            config_for(backend, **values)
        except BackendUnavailableError:
            continue
        except (TypeError, ValueError) as exc:
            raise EdgesrError(f"-O {backend}: {exc}") from None


def _value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def run(args: argparse.Namespace) -> int:
    from edgesr.profiling.render import format_table, plot_latency
    from edgesr.profiling.report import (
        compare_reports,
        load_report,
        validate_report,
        write_report,
    )
    from edgesr.profiling.runner import BenchSettings, run_bench, synthetic_image
    from edgesr.runtimes.registry import entries

    if args.compare:
        if args.json:
            raise EdgesrError("--compare prints a comparison table, not a report: drop --json")
        print(compare_reports(*(load_report(p) for p in args.compare)))
        return 0
    if args.warmup < 0 or args.runs < 1 or args.overlap < 0:
        raise EdgesrError("need --warmup >= 0, --runs >= 1 and --overlap >= 0")
    if args.duration is not None and args.duration <= 0:
        raise EdgesrError("--duration must be a positive number of seconds")
    backends = args.backends or tuple(entries())
    options = parse_options(args.option)
    check_options(options, backends)
    if args.image:
        from edgesr.imageio import read_image

        image = read_image(args.image).pixels[..., :3]
    else:
        image = synthetic_image(*args.image_size)
    precisions = [p.partition("=") for p in args.precisions]
    settings = BenchSettings(
        backends=backends, precisions=tuple(p[0] for p in precisions),
        artifacts={name: path for name, _, path in precisions if path}, tiles=args.tiles,
        batches=args.batches, warmup=args.warmup, runs=args.runs, image=image,
        overlap=args.overlap, downsample=args.consistency_downsample, threads=args.threads,
        options=options, duration=args.duration)
    # with --json, stdout holds the report only: the table and any library output go to stderr
    with stdout_to_stderr() if args.json else contextlib.nullcontext():
        report = run_bench(args.model, settings, isolate=args.isolate)
        print(format_table(report))
        if args.out:
            out = Path(args.out)
            print(f"\nwrote {write_report(report, out / 'report.json')}")
            print(f"wrote {plot_latency(report, out / 'latency.png')}")
    if args.json:
        write_stdout(json.dumps(validate_report(report), indent=2, allow_nan=False))
    return 0
