"""The README's benchmark table: ``edgesr bench`` on the default model, printed as Markdown.

    python benchmarks/bench_report.py [--model realesrgan-x4plus] [--tiles 32,64] [--runs 3]
                                      [--backends torch,onnxruntime] [--out report/]

Runs the same measurement as ``edgesr bench`` (PyTorch eager FP32 baseline in the same run),
writes report.json and latency.png when ``--out`` is given, and prints a Markdown table with
the date, machine and library versions, ready to paste into README.md.
"""

import argparse
import sys
from pathlib import Path

from edgesr.errors import first_line
from edgesr.profiling.render import plot_latency
from edgesr.profiling.report import load_report, write_report
from edgesr.profiling.runner import BenchSettings, run_bench, synthetic_image
from edgesr.runtimes.registry import entries


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def markdown(report: dict) -> str:
    """A Markdown table of a bench report: one line per (backend, precision, tile, batch)."""
    system, model = report["system"], report["model"]
    cpu, libs = system["cpu"], system["libraries"]
    versions = ", ".join(f"{k} {libs[k]}" for k in ("torch", "onnxruntime", "openvino")
                         if k in libs)
    gemm = max(report["gemm_peak_gflops"].values())
    lines = [
        f"Measured {report['created'][:10]} on {cpu['model']} ({cpu['logical_cores']} cores, "
        f"{' '.join(cpu['flags'])}; {system['threads']['torch_intra_op']} torch threads), "
        f"{versions}; model {model['name']}; GEMM peak {gemm:.0f} GFLOP/s; "
        f"{report['settings']['runs']} timed runs after {report['settings']['warmup']} warm-up.",
        "",
        "| backend | precision | tile | batch | p50 ms | p95 ms | LR MP/s | GFLOP/s | "
        "vs PyTorch | end to end | consistency | PSNR vs PyTorch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in report["cases"]:
        if case["status"] != "ok":
            lines.append(f"| {case['backend']} | {case['precision']} | | | unavailable: "
                         f"{first_line(case['reason'])} | | | | | | | |")
            continue
        e2e = case["e2e"]
        for row in case["rows"]:
            lines.append(
                f"| {case['backend']} | {case['precision']} | {row['tile']} | {row['batch']} "
                f"| {row['p50_ms']:.1f} | {_fmt(row['p95_ms'], '.1f')} | {row['lr_mps']:.3g} "
                f"| {_fmt(row['gflops'], '.1f')} | {_fmt(row['speedup'], '.2f', '×')} "
                f"| {e2e['seconds']:.2f} s ({e2e['outside_infer_share'] * 100:.0f}% tiling+blend)"
                f" | {_fmt(case['consistency_psnr_db'], '.1f', ' dB')} "
                f"| {_fmt(case['baseline_psnr_db'], '.1f', ' dB')} |")
    e2e = report["cases"][0]["e2e"]
    if e2e:
        lines += ["", f"End to end: a {e2e['width']}×{e2e['height']} image, tile {e2e['tile']}, "
                  f"overlap {e2e['overlap']}. Consistency: PSNR of the output "
                  f"{report['settings']['downsample']}-downscaled back to the input, vs the input."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file or bundled name")
    parser.add_argument("--backends", default=",".join(entries()))
    parser.add_argument("--tiles", default="32,64")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=64, help="square end-to-end image side")
    parser.add_argument("--out", type=Path, help="write report.json and latency.png here")
    parser.add_argument("--from-report", type=Path, help="print the table of an existing report")
    args = parser.parse_args()

    if args.from_report:
        print(markdown(load_report(args.from_report)))
        return
    settings = BenchSettings(
        backends=tuple(args.backends.split(",")),
        tiles=tuple(int(t) for t in args.tiles.split(",")), warmup=args.warmup, runs=args.runs,
        image=synthetic_image(args.image_size, args.image_size))
    report = run_bench(args.model, settings, log=lambda line: print(line, file=sys.stderr))
    if args.out:
        write_report(report, args.out / "report.json")
        plot_latency(report, args.out / "latency.png")
    print(markdown(report))


if __name__ == "__main__":
    main()
