"""benchmarks/bench_sd_upscaler.py --tiny: the whole benchmark on the tiny SD x4 model, its table,
the CPU and load it records, and the CoreML row skipped off macOS; then its OpenVINO rows (FP32,
BF16, INT8 weights, full INT8 at the BF16 hint), each with the precision the sampler ran."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="diffusers is not installed: "
                    "pip install 'edgesr[diffusion]'")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_sd_upscaler.py"


def test_tiny_benchmark_runs_and_records_what_ran(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--size", "16", "--steps", "2",
                          "--threads", "1", "--no-openvino", "--json", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| diffusers PyTorch FP32 | fp32 |" in run.stdout
    assert "| edgesr sd-upscaler (ORT FP32) | fp32 |" in run.stdout
    record = json.loads(out.read_text())
    assert record["config"] == "tiny" and record["steps"] == 2
    assert record["cpu"] and record["load_before"] >= 0 and record["load_after"] >= 0
    ort = record["cases"]["edgesr sd-upscaler (ORT FP32)"]
    assert ort["first_s"] > 0 and ort["unet"] > 0 and ort["vae"] > 0
    assert ort["psnr_vs_ort_fp32"] == float("inf")
    eager = record["cases"]["diffusers PyTorch FP32"]
    assert eager["psnr_vs_ort_fp32"] > 80  # the same sampler, same seed: FP32 rounding only
    if sys.platform != "darwin":
        assert "needs macOS" in record["skipped"]["edgesr CoreML FP16"]
        assert "| edgesr CoreML FP16 | skipped: needs macOS" in run.stdout


def test_tiny_benchmark_openvino_rows_run_what_they_name(tmp_path):
    pytest.importorskip("nncf", reason="OpenVINO INT8 needs nncf: pip install nncf")
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--size", "16", "--steps", "2",
                          "--threads", "1", "--workdir", str(tmp_path), "--json", str(out)],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    cases = json.loads(out.read_text())["cases"]
    full = cases["edgesr OpenVINO INT8 full, BF16 hint"]
    weights = cases["edgesr OpenVINO INT8 weights, BF16 hint"]
    assert full["ran"] == weights["ran"] == "int8"
    assert "| edgesr OpenVINO INT8 full, BF16 hint | int8 |" in run.stdout
    for case in (full, weights, cases["edgesr OpenVINO BF16"]):
        assert 10 < case["psnr_vs_ort_fp32"] < 80 and case["unet"] > 0  # reduced, not broken
    unet = tmp_path / "tiny" / "openvino_int8_full" / "unet.xml"
    assert 'type="FakeQuantize"' in unet.read_text()  # activations in INT8: full INT8
    assert 'type="FakeQuantize"' not in (unet.parent.parent / "openvino_int8"
                                         / "unet.xml").read_text()
