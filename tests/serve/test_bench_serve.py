"""benchmarks/bench_serve.py runs end to end on tiny inputs: the service and API rows, and the
Ray Data rows with 1 and 2 actors (the figures themselves are not checked)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_serve_runs_every_row(tmp_path):
    pytest.importorskip("ray.data", reason="the Ray rows need Ray Data")
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, ROOT / "benchmarks" / "bench_serve.py", "--requests",
                           "3", "--clients", "1,2", "--size", "16", "--tile", "16", "--images",
                           "3", "--actors", "1,2", "--json", report],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(report.read_text())
    assert [(r["path"], r["clients"]) for r in rows["service"]] == [
        ("http", 1), ("api", 1), ("http", 2), ("api", 2)]
    assert all(r["requests"] == 3 and r["errors"] == 0 for r in rows["service"])
    assert [r["actors"] for r in rows["ray"]] == [1, 2]
    for row in rows["ray"]:
        assert row["images"] == 3 and row["errors"] == 0
        assert 0 < row["startup_s"] <= row["seconds"] and row["images_per_s_after_startup"] > 0
    assert "start-up" in done.stdout and "images/s" in done.stdout
