"""benchmarks/bench_libedgesr.py runs end to end on a tiny model (one run per case; the times
themselves are not checked)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_every_case(build_dir, onnx_models, tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, ROOT / "benchmarks" / "bench_libedgesr.py", "--model",
                           onnx_models["compact_x4"], "--tile", "32", "--overlap", "8", "--runs",
                           "1", "--threads", "1", "--lib",
                           build_dir / "libedgesr" / "libedgesr.so", "--json", report],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lowres.png 96x64, tile 32, overlap 8, OpenVINO CPU, 12 tiles, 1 runs" in done.stdout
    results = json.loads(report.read_text())["results"]
    assert set(results) == {"engine", "python", "c"}
    for case in results.values():
        assert len(case["times"]) == 1 and case["peak_rss_mb"] >= case["base_rss_mb"] > 0
