"""``edgesr bench``: the report follows its schema, renders, plots, compares; the CLI works."""

import copy
import json
from dataclasses import replace

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
from edgesr.profiling.runner import (
    BenchSettings,
    backend_options,
    baseline_case,
    run_bench,
    synthetic_image,
    with_baseline_options,
)
from edgesr.runtimes.base import RuntimeInfo

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


def test_baseline_is_the_kinds_pytorch_backend_sampling_like_the_cases():
    assert baseline_case({}) == baseline_case({"kind": "upscaler"}) == ("torch", "fp32")
    assert baseline_case({"kind": "sd-x4"}) == ("sd-upscaler-torch", "fp32")
    assert baseline_case({"kind": "sr3-denoiser"}) == ("sr3-torch", "fp32")
    given = BenchSettings(backends=("sd-upscaler", "sd-upscaler-openvino"), options={
        "sd-upscaler-openvino": {"steps": 3, "seed": 2, "device": "GPU", "threads": 1}})
    # the sampling fields of the first backend given options; not its device or threads
    assert with_baseline_options(given, "sd-upscaler-torch").options["sd-upscaler-torch"] == {
        "steps": 3, "seed": 2}
    named = replace(given, options={**given.options, "sd-upscaler-torch": {"steps": 5}})
    assert with_baseline_options(named, "sd-upscaler-torch") is named
    upscaler = BenchSettings(backends=("onnxruntime",), options={"onnxruntime": {"threads": 1}})
    assert with_baseline_options(upscaler, "torch") is upscaler


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


def test_rows_keep_raw_samples_spread_and_honest_percentiles(report):
    for case in (c for c in report["cases"] if c["status"] == "ok"):
        assert case["load"]["other_cpu_share"] is not None
        for row in case["rows"]:
            assert len(row["samples_ms"]) == row["runs"] == 2 and row["spread"] >= 0
            assert min(row["samples_ms"]) == row["min_ms"]
            assert row["p95_ms"] is None and row["p99_ms"] is None  # 2 samples: no p99
            assert "needs >= 20" in row["percentile_note"]
            assert "only 2 sample(s)" in row["unreliable"]
    assert any("only 2 sample(s)" in w for w in report["warnings"])
    table = format_table(report)
    assert "p95/p99 need >= 20/100 samples" in table and "! stub fp32 tile 8 batch 1" in table


class LabelledRuntime(NearestRuntime):
    """A stub whose backend reports running another precision than asked."""

    def activate_impl(self) -> RuntimeInfo:
        return replace(super().activate_impl(), precision="bf16")


def test_the_precision_that_ran_labels_the_case():
    def open_case(backend, precision):
        return LabelledRuntime(2) if precision == "fp16" else NearestRuntime(2)

    settings = BenchSettings(backends=("stub",), precisions=("fp32", "fp16"), tiles=(8,),
                             runs=3, warmup=0, image=synthetic_image(16, 16))
    report = run_bench(None, settings, open_case=open_case, model_info=dict(MODEL),
                       log=lambda line: None)
    fp16 = report["cases"][2]
    assert (fp16["precision"], fp16["effective_precision"]) == ("fp16", "bf16")
    assert "asked for fp16, the backend ran bf16" in fp16["unreliable"]
    table = format_table(report)
    assert "stub         bf16* " in table
    assert "* stub: asked for fp16, the backend ran bf16" in table
    validate_report(report)


def test_gflops_above_the_gemm_peak_are_marked():
    settings = BenchSettings(backends=("stub",), tiles=(8,), runs=3, warmup=0,
                             image=synthetic_image(16, 16))
    huge = dict(MODEL, flops_per_lr_pixel=1e15)
    report = run_bench(None, settings, open_case=open_stub, model_info=huge, log=lambda _: None)
    row = report["cases"][1]["rows"][0]
    assert row["peak_fraction"] > 1 and "exceeds the measured FP32 GEMM peak" in row["unreliable"]


def test_without_torch_the_baseline_is_the_fastest_exact_backend():
    """When PyTorch cannot run, the ratios are to the fastest FP32 case, named as such."""
    def open_case(backend, precision):
        if backend == "torch":
            raise BackendUnavailableError("backend 'torch' needs torch")
        return NearestRuntime(2)

    settings = BenchSettings(backends=("stub", "stub2"), precisions=("fp32",), tiles=(8,),
                             runs=3, warmup=0, image=synthetic_image(16, 16))
    report = run_bench(None, settings, open_case=open_case, model_info=dict(MODEL),
                       log=lambda line: None)
    base = report["baseline"]
    assert base["backend"] in ("stub", "stub2") and base["precision"] == "fp32"
    assert "fastest exact backend" in base["reason"]
    chosen = next(c for c in report["cases"] if c["backend"] == base["backend"])
    other = next(c for c in report["cases"] if c["backend"] not in ("torch", base["backend"]))
    assert chosen["e2e"]["speedup"] == 1 and chosen["e2e"]["seconds"] <= other["e2e"]["seconds"]
    assert "fastest exact backend" in format_table(report)
    validate_report(report)


def test_profiling_runs_without_torch(tmp_path):
    """A runtime-only install: the profiling modules import, and the GEMM peak and the system
    come from NumPy and psutil. (The end-to-end run needs the Upscaler, which imports torch
    today, so a whole bench without torch waits for a torch-free Upscaler.)"""
    import subprocess
    import sys

    (tmp_path / "torch.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    code = (
        "import sys; from edgesr.profiling import runner, render, report, system\n"
        "from edgesr.profiling.flops import gemm_peak_gflops\n"
        "from edgesr.commands import bench\n"
        "assert set(gemm_peak_gflops(n=64, repeats=1)) == {'numpy'}\n"
        "assert system.system_info()['threads']['torch_intra_op'] is None\n"
        "from edgesr.profiling import trust, timing, isolation\n"
        "assert 'torch' not in sys.modules\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("option, message", [
    ("onnxruntime:graph_level=all", "has no option(s) graph_level"),
    ("onnxruntime:graph_optimization=everything", "unknown graph_optimization"),
    ("openvino:device=CPU", "'openvino' is not benchmarked"),
    ("tflite:threads=2", "unknown backend 'tflite'"),
])
def test_bad_backend_options_are_errors(tmp_path, capsys, option, message):
    args = ["bench", "-m", str(tmp_path / "any.pth"), "-b", "torch,onnxruntime", "-O", option]
    assert main(args) == 1
    assert message in capsys.readouterr().err


def test_the_help_example_option_is_accepted():
    import argparse

    from edgesr.commands import bench

    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    help_text = parser._subparsers._group_actions[0].choices["bench"].format_help()
    example = help_text.split("e.g.")[-1].split()[0]
    backend = example.partition(":")[0]
    bench.check_options(bench.parse_options([example]), (backend,))


def test_duration_mode_and_its_cli_flag(tmp_path, capsys):
    from edgesr.profiling.timing import time_calls

    samples = time_calls(lambda: None, warmup=0, runs=3, duration=0.02)
    assert len(samples) >= 3 and sum(samples) >= 0.02
    checkpoint = tmp_path / "compact_x2.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, checkpoint)
    args = ["bench", "-m", str(checkpoint), "-b", "torch", "--tiles", "8", "--warmup", "0",
            "--duration", "0.2", "--image-size", "16x16", "--no-isolate", "-o", str(tmp_path)]
    assert main(args) == 0
    report = load_report(tmp_path / "report.json")
    row = report["cases"][0]["rows"][0]
    assert report["settings"]["duration"] == 0.2 and sum(row["samples_ms"]) >= 200
    assert main(args[:-2] + ["--duration", "0"]) == 1
