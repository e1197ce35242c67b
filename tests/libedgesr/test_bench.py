"""benchmarks/bench_libedgesr.py runs end to end on a tiny model (one run per case; the times
themselves are not checked): both paths, each with its engine alone, the same pixels."""

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
    assert ("lowres.png 96x64, tile 32, overlap 8, OpenVINO CPU, 12 tiles, batch 1, 1 runs"
            in done.stdout)
    assert "same pixels: yes" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines()[2:6]]  # engine, then its path
    assert [r[0] for r in rows] == ["python", "python", "c", "c"]
    assert rows[0][1] == rows[2][1] == "engine" and len(rows[1]) == len(rows[3]) == 6
    results = json.loads(report.read_text())["results"]
    assert set(results) == {"python", "c"}
    assert results["python"]["sha256"] == results["c"]["sha256"]
    for case in results.values():
        assert len(case["times"]) == len(case["engine_times"]) == 1
        assert case["peak_rss_mb"] >= case["base_rss_mb"] > 0
