"""``edgesr bench``: the report follows its schema, renders, plots, compares; the CLI works."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from stub_runtimes import NearestRuntime
from tiny_models import make_tiny

from edgesr.cli import main
from edgesr.errors import BackendUnavailableError, EdgesrError
from edgesr.profiling.render import format_table, plot_latency
from edgesr.profiling.report import (
    ReportError,
    compare_reports,
    load_report,
    validate_report,
    write_report,
)
from edgesr.profiling.runner import BenchSettings, backend_options, run_bench, synthetic_image

MODEL = {"source": "stub", "name": "nearest x2", "scale": 2, "flops_per_lr_pixel": 100.0}


def open_stub(backend: str, precision: str):
    """torch and stub are nearest-neighbour x2; stub int8 adds a pattern; others are missing."""
    if backend not in ("torch", "stub") or precision not in ("fp32", "int8"):
        raise BackendUnavailableError(f"backend {backend!r} {precision} is not installed")
    return NearestRuntime(2, (4, 8, 4, 8) if precision == "int8" else None)


@pytest.fixture(scope="module")
def report() -> dict:
    settings = BenchSettings(backends=("stub", "missing"), precisions=("fp32", "int8"),
                             tiles=(8, 16), batches=(1, 2), warmup=1, runs=2,
                             image=synthetic_image(24, 20), downsample="area")
    return run_bench(None, settings, open_case=open_stub, model_info=dict(MODEL),
                     log=lambda line: None)


def test_report_follows_schema_with_baseline_first(report):
    validate_report(report)
    json.dumps(report, allow_nan=False)
    keys = [(c["backend"], c["precision"], c["status"]) for c in report["cases"]]
    assert keys == [("torch", "fp32", "ok"), ("stub", "fp32", "ok"), ("stub", "int8", "ok"),
                    ("missing", "fp32", "unavailable"), ("missing", "int8", "unavailable")]
    assert "not installed" in report["cases"][3]["reason"]
    base = report["cases"][0]
    assert [(r["tile"], r["batch"]) for r in base["rows"]] == [(8, 1), (8, 2), (16, 1), (16, 2)]
    assert all(r["speedup"] == 1 for r in base["rows"]) and base["e2e"]["speedup"] == 1
    assert all(r["runs"] == 2 and r["p50_ms"] > 0 and r["gflops"] > 0 for r in base["rows"])
    e2e = base["e2e"]
    assert (e2e["height"], e2e["width"], e2e["tile"]) == (24, 20, 16)
    assert 0 <= e2e["outside_infer_share"] < 1 and e2e["infer_seconds"] <= e2e["seconds"]


def test_consistency_and_parity_per_case(report):
    base, same, pattern = report["cases"][:3]
    assert base["consistency_psnr_db"] == same["consistency_psnr_db"] == 100.0
    assert same["baseline_psnr_db"] == 100.0
    assert pattern["consistency_psnr_db"] < 40 and pattern["baseline_psnr_db"] < 40


@pytest.mark.parametrize("path, mutate", [
    ("cases[0].rows[0]: missing key 'p50_ms'", lambda r: r["cases"][0]["rows"][0].pop("p50_ms")),
    ("report.model.scale: expected int", lambda r: r["model"].update(scale="4")),
    ("cases[1].e2e", lambda r: r["cases"][1].update(e2e=[])),
    ("schema version", lambda r: r.update(schema_version=99)),
])
def test_schema_violations_are_named(report, path, mutate):
    broken = copy.deepcopy(report)
    mutate(broken)
    with pytest.raises(ReportError, match=path.replace("[", r"\[").replace("]", r"\]")):
        validate_report(broken)


def test_table_png_json_and_compare(report, tmp_path):
    table = format_table(report)
    assert "missing      fp32  unavailable: backend 'missing'" in table
    assert "GEMM peak" in table and "tiling+blend" in table
    png = plot_latency(report, tmp_path / "out" / "latency.png")
    with Image.open(png) as im:
        im.verify()
        assert im.format == "PNG" and im.size[0] > 500
    path = write_report(report, tmp_path / "out" / "report.json")
    assert load_report(path) == json.loads(json.dumps(report))
    faster = copy.deepcopy(report)
    faster["system"]["libraries"]["torch"] = "9.9"
    for case in faster["cases"]:
        for row in case["rows"]:
            row["p50_ms"] /= 2
    text = compare_reports(report, faster)
    assert "torch: " in text and "9.9" in text
    assert text.count("2.00x") == 3 * 4  # every ok case, every (tile, batch) row
    fewer = copy.deepcopy(report)
    fewer["cases"].pop(1)
    assert "stub         fp32  only in A" in compare_reports(report, fewer)
    assert "stub         fp32  only in B" in compare_reports(fewer, report)


def test_load_report_rejects_non_reports(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ReportError, match="not an edgesr-bench report"):
        load_report(bad)
    with pytest.raises(ReportError, match="not found"):
        load_report(tmp_path / "none.json")


def test_precision_needs_a_backend_option():
    settings = BenchSettings(backends=("torch",), threads=1)
    assert backend_options("torch", "fp32", settings) == {"threads": 1}
    with pytest.raises(EdgesrError, match="no precision option"):
        backend_options("torch", "int8", settings)
    with_file = BenchSettings(backends=("torch",), artifacts={"int8": "x4_int8.onnx"})
    assert backend_options("torch", "int8", with_file) == {}


def test_cli_bench_and_compare(tmp_path, capsys):
    checkpoint = tmp_path / "compact_x2.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, checkpoint)
    other = tmp_path / "other.pth"  # stands in for a quantized model file of one precision
    torch.save({"params_ema": make_tiny("compact_x2", seed=1).state_dict()}, other)
    args = ["bench", "-m", str(checkpoint), "-b", "torch,nosuch", "-p", f"fp32,fp16,q={other}",
            "--tiles", "8,16", "--runs", "1", "--warmup", "0", "--image-size", "24x16"]
    assert main(args + ["-o", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "nosuch       fp32  unavailable: unknown backend 'nosuch'" in out
    assert "torch        fp16  unavailable: backend 'torch' has no precision option" in out
    report = load_report(tmp_path / "a" / "report.json")
    q = next(c for c in report["cases"] if c["precision"] == "q" and c["backend"] == "torch")
    assert q["status"] == "ok" and q["baseline_psnr_db"] < 60
    assert report["settings"]["artifacts"] == {"q": str(other)}
    assert report["model"]["scale"] == 2 and report["model"]["flops_per_lr_pixel"] > 0
    with Image.open(tmp_path / "a" / "latency.png") as im:
        assert im.format == "PNG"
    assert main(["bench", "--compare", str(tmp_path / "a" / "report.json"),
                 str(tmp_path / "a" / "report.json")]) == 0
    assert "1.00x" in capsys.readouterr().out
    assert main(["bench", "--compare", str(tmp_path / "a" / "latency.png"),
                 str(tmp_path / "a" / "report.json")]) == 1
    assert np.isfinite(report["gemm_peak_gflops"]["torch"])


def test_cli_bench_missing_model_is_one_error(tmp_path, capsys):
    assert main(["bench", "-m", str(tmp_path / "none.pth")]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_backend_options_from_the_command_line():
    from edgesr.commands.bench import parse_options

    assert parse_options(["onnxruntime:threads=2", "ov:hint=true", "ov:device=CPU",
                          "ov:scale=0.5"]) == {"onnxruntime": {"threads": 2},
                                               "ov": {"hint": True, "device": "CPU", "scale": 0.5}}
    with pytest.raises(EdgesrError, match="BACKEND:KEY=VALUE"):
        parse_options(["threads=2"])
