"""benchmarks/bench_cpu_speed.py runs end to end on a tiny checkpoint and two photos (one run
per case; the times themselves are not checked); its PSNR is each photo's output against that
photo's own FP32 reference."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import make_tiny

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_cpu_speed.py"

needs_backends = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("openvino", "onnxruntime", "nncf")),
    reason="needs openvino, onnxruntime and nncf")


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_cpu_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_counts_of_off_by_one_values_give_equal_psnr(tmp_path):
    """Why an exact path can score the same PSNR, to the last digit, on two different photos:
    with every difference one 8-bit level, the PSNR depends only on how many values differ."""
    compare8 = _bench_module().compare8
    rng = np.random.default_rng(0)
    scores = []
    for name in ("a", "b"):
        reference = rng.integers(1, 255, (32, 48, 3), dtype=np.uint8)
        output = reference.copy().reshape(-1)
        output[rng.choice(output.size, 7, replace=False)] += 1
        Image.fromarray(reference).save(tmp_path / f"{name}-ref.png")
        Image.fromarray(output.reshape(reference.shape)).save(tmp_path / f"{name}-out.png")
        scores.append(compare8(tmp_path / f"{name}-ref.png", tmp_path / f"{name}-out.png"))
    (psnr_a, diff_a), (psnr_b, diff_b) = scores
    assert diff_a == diff_b == {"values": 32 * 48 * 3, "changed": 7, "max": 1}
    assert psnr_a == psnr_b == pytest.approx(10 * math.log10(255 ** 2 * 32 * 48 * 3 / 7))
    assert compare8(tmp_path / "a-ref.png", tmp_path / "a-ref.png") == (
        100.0, {"values": 32 * 48 * 3, "changed": 0, "max": 0})


@needs_backends
def test_bench_cpu_speed_on_a_tiny_model_and_two_photos(tmp_path):
    model = tmp_path / "tiny.pth"
    torch.save({"params_ema": make_tiny("compact_x4").state_dict()}, model)
    photo = ROOT / "tests" / "data" / "grace_hopper_480.jpg"
    second = tmp_path / "turned.png"
    Image.open(photo).transpose(Image.Transpose.ROTATE_90).save(second)
    out = tmp_path / "out"
    cases = "pytorch-eager-fp32,edgesr-default,onnxruntime-fp16,openvino-fp32,openvino-mixed"
    done = subprocess.run(
        [sys.executable, SCRIPT, "--model", str(model),
         "--image", str(photo), "--image", str(second), "--image-size", "24", "--tile", "0",
         "--tile-size", "16", "--repeats", "1", "--threads", "1", "--cases", cases,
         "--quantize-args", "--tile 16 --eval-count 2", "--out-dir", str(out)],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["case"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert list(results) == cases.split(",")
    assert all(not r["error"] and len(r["end_to_end_s"]) == 1 and r["tile_ms"] > 0
               for r in results.values()), results
    ranked = "openvino" if importlib.util.find_spec("openvino") else "onnxruntime"
    assert results["edgesr-default"]["ran"].startswith(f"{ranked} on ")
    assert "at fp16" in results["onnxruntime-fp16"]["ran"]  # the guarded FP16 graph
    assert "at mixed" in results["openvino-mixed"]["ran"]
    for name in ("edgesr-default", "openvino-fp32"):  # exact paths, on both photos
        psnrs = results[name]["psnr_by_photo"]
        assert set(psnrs) == {"grace_hopper_480", "turned"} and min(psnrs.values()) >= 60
        assert results[name]["psnr_db"] == min(psnrs.values())
        for photo in psnrs:  # against that photo's own reference, with its differences
            psnr, diff = _bench_module().compare8(
                out / f"pytorch-eager-fp32-input-{photo}.png", out / f"{name}-input-{photo}.png")
            assert psnrs[photo] == psnr and results[name]["diff_by_photo"][photo] == diff
            assert diff["values"] == 96 * 96 * 3
    assert "| edgesr-default |" in (out / "results.md").read_text()
