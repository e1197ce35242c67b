"""The benchmark report: its JSON schema, a validator, atomic writing, and comparing two reports.

The schema is documented in docs/bench-schema.md. A report is a plain dict; ``SCHEMA`` below is
the machine-readable form the validator walks (no jsonschema dependency): a dict maps required
keys to their specs (a key ending in ``?`` may be missing: added after version 1 came out), a
one-element list is a list of that spec, a tuple lists allowed types, and ``None`` among them
allows null.
"""

import json
import os
from pathlib import Path

from edgesr.errors import EdgesrError
from edgesr.fsutil import write_bytes

SCHEMA_NAME = "edgesr-bench"
SCHEMA_VERSION = 1

NUM = (int, float)
OPT_NUM = (int, float, None)

OPT_STR = (str, None)
ROW = {
    "tile": int, "batch": int, "runs": int,
    "p50_ms": NUM, "p95_ms": OPT_NUM, "p99_ms": OPT_NUM, "mean_ms": NUM, "min_ms": NUM,
    "tile_ms": NUM, "lr_mps": NUM, "gflops": OPT_NUM, "peak_fraction": OPT_NUM,
    "speedup": OPT_NUM, "spread?": NUM, "samples_ms?": [NUM], "percentile_note?": OPT_STR,
    "unreliable?": OPT_STR,
}
LOAD = {"loadavg_before": ([NUM], None), "loadavg_after": ([NUM], None),
        "other_cpu_share": OPT_NUM}
E2E = {
    "height": int, "width": int, "tile": int, "overlap": int, "batch": int, "runs": int,
    "seconds": NUM, "infer_seconds": NUM, "outside_infer_seconds": NUM,
    "outside_infer_share": NUM, "lr_mps": NUM, "speedup": OPT_NUM,
}
CASE = {
    "backend": str, "precision": str, "options": dict, "status": str, "reason": (str, None),
    "effective_precision?": OPT_STR, "load?": (LOAD, None), "unreliable?": OPT_STR,
    "peak_rss_mb": OPT_NUM, "startup_rss_mb?": OPT_NUM, "rss_ratio": OPT_NUM,
    "gpu_peak_mb": OPT_NUM,
    "consistency_psnr_db": OPT_NUM, "baseline_psnr_db": OPT_NUM,
    "rows": [ROW], "e2e": (E2E, None),
}
SCHEMA = {
    "schema": str, "schema_version": int, "created": str,
    "system": {"hostname": str, "os": str, "python": str,
               "cpu": {"model": str, "arch": str, "flags": [str], "logical_cores": int},
               "memory_mb": OPT_NUM, "gpus": [dict], "libraries": dict, "threads": dict},
    "model": {"source": str, "name": str, "scale": int, "flops_per_lr_pixel": OPT_NUM,
              "kind?": str},
    "settings": {"backends": [str], "precisions": [str], "tiles": [int], "batches": [int],
                 "warmup": int, "runs": int, "image": [int], "overlap": int,
                 "downsample": str, "threads": int, "artifacts": dict, "isolate?": bool,
                 "duration?": OPT_NUM},
    "gemm_peak_gflops": {"torch?": NUM, "numpy": NUM},
    "baseline": {"backend": str, "precision": str, "reason?": OPT_STR},
    "load_at_start?": ([NUM], None), "warnings?": [str],
    "cases": [CASE],
}


class ReportError(EdgesrError):
    """A benchmark report is unreadable or does not follow the schema."""


def _check(value, spec, where: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ReportError(f"{where}: expected an object, got {type(value).__name__}")
        for key, sub in spec.items():
            name = key.removesuffix("?")
            if name not in value:
                if name != key:
                    continue
                raise ReportError(f"{where}: missing key {key!r}")
            _check(value[name], sub, f"{where}.{name}")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise ReportError(f"{where}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]")
    elif isinstance(spec, tuple):
        if value is None and None in spec:
            return
        for option in (s for s in spec if s is not None):
            try:
                _check(value, option, where)
                return
            except ReportError:
                continue
        raise ReportError(f"{where}: {value!r} is none of the allowed types")
    elif spec in (int, float) and isinstance(value, bool) or not isinstance(value, spec):
        raise ReportError(f"{where}: expected {spec.__name__}, got {type(value).__name__}")


def validate_report(report: dict) -> dict:
    """Check a report against ``SCHEMA`` (and its name and version); return it unchanged."""
    if not isinstance(report, dict) or report.get("schema") != SCHEMA_NAME:
        raise ReportError(f"not an {SCHEMA_NAME} report")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise ReportError(f"report schema version {report.get('schema_version')!r} is not "
                          f"{SCHEMA_VERSION}, the one this edgesr reads")
    _check(report, SCHEMA, "report")
    return report


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (``fsutil.write_bytes``); ReportError if it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, data)
    except OSError as exc:
        raise ReportError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path


def write_report(report: dict, path: Path) -> Path:
    """Validate and write a report as indented JSON."""
    text = json.dumps(validate_report(report), indent=2, allow_nan=False)
    return write_atomic(path, (text + "\n").encode())


def load_report(path: str | os.PathLike) -> dict:
    """Read and validate a report JSON file."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: report not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a readable JSON report ({exc})") from None
    try:
        return validate_report(report)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None


def _ratio(new: float | None, old: float | None) -> str:
    return f"{old / new:.2f}x" if new and old else "-"


def _system_changes(a: dict, b: dict) -> list[str]:
    sa, sb = a["system"], b["system"]
    lines = []
    for label, va, vb in (("cpu", sa["cpu"]["model"], sb["cpu"]["model"]),
                          ("flags", " ".join(sa["cpu"]["flags"]), " ".join(sb["cpu"]["flags"])),
                          ("threads", sa["threads"], sb["threads"])):
        if va != vb:
            lines.append(f"{label}: {va} -> {vb}")
    for lib in sorted(set(sa["libraries"]) | set(sb["libraries"])):
        va, vb = sa["libraries"].get(lib, "-"), sb["libraries"].get(lib, "-")
        if va != vb:
            lines.append(f"{lib}: {va} -> {vb}")
    return lines


def compare_reports(a: dict, b: dict) -> str:
    """A text table of what changed from report ``a`` to report ``b``, row by matching row.

    ``speed`` is a's p50 / b's p50: above 1, b is faster.
    """
    lines = [f"A: {a['created']} {a['system']['hostname']} ({a['model']['name']})",
             f"B: {b['created']} {b['system']['hostname']} ({b['model']['name']})"]
    lines += [f"  changed {change}" for change in _system_changes(a, b)]
    header = (f"{'backend':<12} {'prec':<5} {'tile':>5} {'batch':>5} {'A p50 ms':>10} "
              f"{'B p50 ms':>10} {'speed':>7} {'A MP/s':>8} {'B MP/s':>8}")
    lines += ["", header, "-" * len(header)]
    cases_b = {(c["backend"], c["precision"]): c for c in b["cases"]}
    for case_a in a["cases"]:
        key = (case_a["backend"], case_a["precision"])
        case_b = cases_b.get(key)
        if case_b is None or case_a["status"] != "ok" or case_b["status"] != "ok":
            status = "only in A" if case_b is None else f"{case_a['status']} / {case_b['status']}"
            lines.append(f"{key[0]:<12} {key[1]:<5} {status}")
            continue
        rows_b = {(r["tile"], r["batch"]): r for r in case_b["rows"]}
        for ra in case_a["rows"]:
            rb = rows_b.get((ra["tile"], ra["batch"]))
            if rb is None:
                continue
            lines.append(f"{key[0]:<12} {key[1]:<5} {ra['tile']:>5} {ra['batch']:>5} "
                         f"{ra['p50_ms']:>10.2f} {rb['p50_ms']:>10.2f} "
                         f"{_ratio(rb['p50_ms'], ra['p50_ms']):>7} "
                         f"{ra['lr_mps']:>8.3g} {rb['lr_mps']:>8.3g}")
        if case_a["e2e"] and case_b["e2e"]:
            ea, eb = case_a["e2e"], case_b["e2e"]
            lines.append(f"{'':<18} end-to-end {ea['seconds']:.3f} s -> {eb['seconds']:.3f} s "
                         f"({_ratio(eb['seconds'], ea['seconds'])})")
    keys_a = {(c["backend"], c["precision"]) for c in a["cases"]}
    lines += [f"{key[0]:<12} {key[1]:<5} only in B" for key in cases_b if key not in keys_a]
    return "\n".join(lines)
