"""Show a benchmark report: a terminal table and a latency-vs-tile-size plot (matplotlib PNG)."""

import io
from pathlib import Path

from edgesr.errors import first_line
from edgesr.profiling.report import write_atomic


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def precision_label(case: dict) -> str:
    """The precision that ran: the backend's report where it gave one, marked ``*`` when it
    differs from the one asked for."""
    ran = case.get("effective_precision")
    return f"{ran}*" if ran and ran != case["precision"] else case["precision"]


def format_header(report: dict) -> str:
    """Machine, software and model lines that head the table."""
    system, model = report["system"], report["model"]
    cpu, threads = system["cpu"], system["threads"]
    libs = ", ".join(f"{k} {v}" for k, v in system["libraries"].items() if k != "edgesr")
    gemm = report["gemm_peak_gflops"]
    flops = model["flops_per_lr_pixel"]
    baseline = report["baseline"]
    load = report.get("load_at_start")
    torch_threads = ("torch not installed" if threads["torch_intra_op"] is None else
                     f"torch {threads['torch_intra_op']} intra-op / {threads['torch_inter_op']} "
                     "inter-op")
    lines = [
        f"edgesr bench  {report['created']}  {system['hostname']} ({system['os']})",
        f"cpu: {cpu['model']} ({cpu['arch']}), {cpu['logical_cores']} logical cores; "
        f"flags: {' '.join(cpu['flags']) or '-'}",
        *(f"gpu: {gpu['name']}" for gpu in system["gpus"]),
        f"threads: {torch_threads}; libraries: {libs}",
        f"model: {model['name']} ({model['source']}); "
        + (f"{flops / 1e6:.2f} MFLOP per LR pixel" if flops else "FLOPs unknown"),
        "GEMM peak (fp32 matmul): "
        + ", ".join(f"{lib} {value:.1f}" for lib, value in gemm.items()) + " GFLOP/s"
        + (f"; load average at start {' '.join(map(str, load))}" if load else ""),
        f"baseline: {baseline['backend']} {baseline['precision']}"
        + (f" ({baseline['reason']})" if baseline.get("reason") else "")
        + "; x = speedup over it",
    ]
    return "\n".join(lines)


def format_table(report: dict) -> str:
    """The whole report as text: header, per-tile latency table, end-to-end table."""
    head = (f"{'backend':<12} {'prec':<5} {'tile':>5} {'batch':>5} {'p50 ms':>9} "
            f"{'p95 ms':>9} {'p99 ms':>9} {'ms/tile':>9} {'LR MP/s':>8} {'GFLOP/s':>8} "
            f"{'%peak':>6} {'x':>7} {'spread':>6}")
    lines = [format_header(report), "", head, "-" * len(head)]
    notes = set()
    for case in report["cases"]:
        label = f"{case['backend']:<12} {precision_label(case):<5}"
        if case["status"] != "ok":
            lines.append(f"{label} unavailable: {first_line(case['reason'])}")
            continue
        for row in case["rows"]:
            fraction = row["peak_fraction"]
            flag = " !" if row.get("unreliable") or case.get("unreliable") else ""
            notes.add(row.get("percentile_note") and row["percentile_note"].split(":")[0])
            lines.append(
                f"{label} {row['tile']:>5} {row['batch']:>5} {row['p50_ms']:>9.2f} "
                f"{_num(row['p95_ms'], '9.2f'):>9} {_num(row['p99_ms'], '9.2f'):>9} "
                f"{row['tile_ms']:>9.2f} {row['lr_mps']:>8.3g} {_num(row['gflops'], '8.1f'):>8} "
                f"{_num(fraction and fraction * 100, '5.1f'):>6} {_ratio(row['speedup']):>7} "
                f"{_num(row.get('spread') and row['spread'] * 100, '5.0f'):>5}%{flag}")
    lines += _footnotes(report, notes)
    ok = [c for c in report["cases"] if c["status"] == "ok" and c["e2e"]]
    if ok:
        e2e = ok[0]["e2e"]
        head = (f"{'backend':<12} {'prec':<5} {'e2e s':>8} {'x':>7} {'infer s':>8} "
                f"{'tiling+blend':>12} {'RSS MB':>8} {'x':>6} {'start MB':>8} "
                f"{'consist dB':>10} {'vs base dB':>10}")
        memory = ("RSS MB = peak RSS of the case's own process; start MB = its RSS before "
                  "the model was opened" if report["settings"].get("isolate") else
                  "RSS MB = peak RSS of this process during the case (earlier cases included)")
        lines += ["", f"end to end: {e2e['width']}x{e2e['height']} image, tile {e2e['tile']}, "
                  f"overlap {e2e['overlap']}, batch {e2e['batch']}; consistency = PSNR of "
                  f"{report['settings']['downsample']}-downscaled output vs input", memory,
                  head, "-" * len(head)]
        for case in ok:
            e = case["e2e"]
            lines.append(
                f"{case['backend']:<12} {precision_label(case):<5} {e['seconds']:>8.3f} "
                f"{_ratio(e['speedup']):>7} {e['infer_seconds']:>8.3f} "
                f"{e['outside_infer_share'] * 100:>11.1f}% {_num(case['peak_rss_mb'], '8.0f'):>8} "
                f"{_ratio(case['rss_ratio']):>6} {_num(case.get('startup_rss_mb'), '8.0f'):>8} "
                f"{_num(case['consistency_psnr_db'], '10.2f'):>10} "
                f"{_num(case['baseline_psnr_db'], '10.2f'):>10}")
    staged = [c for c in ok if c["e2e"].get("stages")]
    if staged:
        lines += ["", "diffusion stages (end to end): time in each graph; one UNet call per "
                  "sampling step and tile (unless latent-tiled), one VAE call per tile"]
        for case in staged:
            parts = [f"{name} {s['seconds']:.3f} s / {s['calls']} calls = "
                     f"{_num(s['ms_per_call'], '.1f')} ms per call"
                     for name, s in case["e2e"]["stages"].items()]
            lines.append(f"{case['backend']:<12} {case['precision']:<5} {'; '.join(parts)}")
    return "\n".join(lines)


def _footnotes(report: dict, notes: set) -> list[str]:
    """What ``*``, ``!`` and a missing percentile mean, and every warning."""
    lines = []
    for case in report["cases"]:
        if precision_label(case).endswith("*"):
            lines.append(f"* {case['backend']}: asked for {case['precision']}, the backend ran "
                         f"{case['effective_precision']}")
    if any(note for note in notes):
        lines.append("- p95/p99 need >= 20/100 samples: use --duration or more --runs")
    warnings = report.get("warnings") or []
    lines += [f"! {warning}" for warning in warnings]
    return ["", *lines] if lines else []


def plot_latency(report: dict, path: Path) -> Path:
    """Write a PNG: p50 latency per tile and LR MP/s against tile size, a line per case/batch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_ms, ax_mps = fig.subplots(1, 2)
    for case in report["cases"]:
        if case["status"] != "ok":
            continue
        for batch in sorted({r["batch"] for r in case["rows"]}):
            rows = sorted((r for r in case["rows"] if r["batch"] == batch), key=lambda r: r["tile"])
            label = f"{case['backend']} {precision_label(case)}" + (
                f" b{batch}" if batch > 1 else "")
            tiles = [r["tile"] for r in rows]
            ax_ms.plot(tiles, [r["tile_ms"] for r in rows], marker="o", label=label)
            ax_mps.plot(tiles, [r["lr_mps"] for r in rows], marker="o", label=label)
    ax_ms.set(xlabel="tile size (input px)", ylabel="p50 latency per tile (ms)",
              title="latency vs tile size")
    ax_mps.set(xlabel="tile size (input px)", ylabel="LR megapixels / s", title="throughput")
    for ax in (ax_ms, ax_mps):
        ax.grid(alpha=0.3)
    if ax_ms.lines:
        ax_ms.set_yscale("log")
        ax_ms.legend(fontsize=8)
    fig.suptitle(f"{report['model']['name']} on {report['system']['cpu']['model']} "
                 f"({report['created'][:10]})", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return write_atomic(Path(path), buffer.getvalue())
