"""benchmarks/bench_cpu_speed.py runs end to end on a tiny checkpoint and two photos (one run
per case; the times themselves are not checked)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_models import make_tiny

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("openvino", "onnxruntime", "nncf")),
    reason="needs openvino, onnxruntime and nncf")


def test_bench_cpu_speed_on_a_tiny_model_and_two_photos(tmp_path):
    model = tmp_path / "tiny.pth"
    torch.save({"params_ema": make_tiny("compact_x4").state_dict()}, model)
    photo = ROOT / "tests" / "data" / "grace_hopper_480.jpg"
    second = tmp_path / "turned.png"
    Image.open(photo).transpose(Image.Transpose.ROTATE_90).save(second)
    out = tmp_path / "out"
    cases = "pytorch-eager-fp32,edgesr-default,onnxruntime-fp16,openvino-fp32,openvino-mixed"
    done = subprocess.run(
        [sys.executable, ROOT / "benchmarks" / "bench_cpu_speed.py", "--model", str(model),
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
    assert "| edgesr-default |" in (out / "results.md").read_text()
