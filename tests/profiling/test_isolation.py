"""``edgesr bench`` through the registry: each case in a spawned child process of its own.

These start real child processes (each imports torch), so they keep to a few, with a tiny model.
"""

import os
import signal

import numpy as np
import psutil
import pytest
import torch
from tiny_models import make_tiny

from edgesr.cli import main
from edgesr.profiling.render import format_table
from edgesr.profiling.report import load_report, validate_report
from edgesr.profiling.runner import BenchSettings, run_bench, synthetic_image

BALLAST_MB = 500


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[str, str]:
    """Two tiny compact x2 checkpoints with different weights: (model, other)."""
    folder = tmp_path_factory.mktemp("iso")
    paths = []
    for seed in (0, 1):
        path = folder / f"compact_x2_{seed}.pth"
        torch.save({"params_ema": make_tiny("compact_x2", seed=seed).state_dict()}, path)
        paths.append(str(path))
    return paths[0], paths[1]


def settings_for(**changes) -> BenchSettings:
    return BenchSettings(**{"backends": ("torch",), "tiles": (16,), "warmup": 0, "runs": 1,
                            "image": synthetic_image(16, 16), "threads": 1, **changes})


class Dies:
    """An option value that ends the child process which unpickles it (``call(*args)``)."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def test_peak_rss_is_the_case_process_alone(checkpoints, tmp_path, capsys):
    model, other = checkpoints
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    settings = settings_for(precisions=("fp32", "q", "bad"),
                            artifacts={"q": other, "bad": str(bad)})
    ballast = np.ones(BALLAST_MB << 17)  # float64: BALLAST_MB MiB, every page written
    parent_mb = psutil.Process().memory_info().rss / (1 << 20)
    report = run_bench(model, settings, log=lambda line: None)
    validate_report(report)
    assert report["settings"]["isolate"] is True
    base, q, broken = report["cases"]
    for case in (base, q):
        assert case["status"] == "ok", case["reason"]
        assert 0 < case["startup_rss_mb"] <= case["peak_rss_mb"] < parent_mb - 0.8 * BALLAST_MB
    assert base["rss_ratio"] == 1 and q["rss_ratio"] == q["peak_rss_mb"] / base["peak_rss_mb"]
    assert base["baseline_psnr_db"] == 100 and q["baseline_psnr_db"] < 60
    assert base["e2e"]["speedup"] == 1 and q["e2e"]["speedup"] > 0 and q["rows"][0]["speedup"] > 0
    assert broken["status"] == "unavailable"
    assert broken["reason"].startswith(f"{bad}: not a readable PyTorch checkpoint")
    assert "start MB" in format_table(report) and "case's own process" in format_table(report)

    # the baseline again, in this process: the ballast counts
    assert main(["bench", "-m", model, "-b", "torch", "--tiles", "16", "--runs", "1", "--warmup",
                 "0", "--image-size", "16x16", "--no-isolate", "-o", str(tmp_path)]) == 0
    one = load_report(tmp_path / "report.json")
    assert one["settings"]["isolate"] is False and one["cases"][0]["startup_rss_mb"] is None
    assert one["cases"][0]["peak_rss_mb"] > parent_mb - 0.2 * BALLAST_MB
    assert "earlier cases included" in capsys.readouterr().out
    del ballast


@pytest.mark.parametrize("option, reason", [
    (Dies(signal.raise_signal, signal.SIGKILL),
     "the case's process was killed by SIGKILL (out of memory?)"),
    (Dies(os._exit, 3), "the case's process exited with code 3 before reporting"),
    ("nosuch", "the case's process failed: RuntimeError: "),
], ids=["killed", "exit", "raises"])
def test_a_failing_case_process_is_an_unavailable_case(checkpoints, option, reason):
    settings = settings_for(backends=("torch", "nosuch"), options={"torch": {"device": option}})
    report = run_bench(checkpoints[0], settings, log=lambda line: None)
    crashed, missing = report["cases"]
    assert crashed["status"] == "unavailable" and crashed["reason"].startswith(reason)
    assert "for the PyTorch baseline" in crashed["reason"]
    assert crashed["rss_ratio"] is None and crashed["baseline_psnr_db"] is None
    assert missing["reason"].startswith("unknown backend 'nosuch'")
