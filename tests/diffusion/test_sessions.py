"""Session factories' shared parts: ONNX metadata, the per-graph StageTimer, and ``edgesr bench``
reporting a sampler's time per graph."""

import numpy as np
import pytest
from tiny_models import TINY_SR3_BETAS, export_tiny_diffusion

from edgesr.cli import main
from edgesr.diffusion.sessions import StageTimer, onnx_metadata
from edgesr.errors import CheckpointError
from edgesr.runtimes import create_runtime


@pytest.fixture(scope="module")
def sr3(tmp_path_factory):
    return export_tiny_diffusion(tmp_path_factory.mktemp("sessions")) / "sr3.onnx"


def test_onnx_metadata_reads_edgesr_fields_and_refuses_garbage(sr3, tmp_path):
    assert onnx_metadata(sr3)["edgesr.role"] == "denoiser"  # raw: the sampler decodes it
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a readable ONNX file"):
        onnx_metadata(tmp_path / "bad.onnx")


def test_stage_timer_counts_one_denoiser_call_per_step(sr3):
    with create_runtime("sr3", sr3, scale=2) as runtime:
        runtime.infer(np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32))
        report = runtime.stage_timer.report()
        assert runtime.info.precision == "fp32"  # the denoiser session's own report
        assert list(report) == ["sr3"] and report["sr3"]["calls"] == 2 * len(TINY_SR3_BETAS)
        assert report["sr3"]["seconds"] > 0
        runtime.stage_timer.reset()
        assert runtime.stage_timer.report()["sr3"] == {"seconds": 0.0, "calls": 0,
                                                       "ms_per_call": None}
    assert StageTimer().report() == {}


def test_bench_reports_time_per_graph(sr3, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path))
    assert main(["bench", "-m", str(sr3), "-b", "sr3", "--tiles", "8", "--runs", "1",
                 "--warmup", "0", "--image-size", "8x8", "--no-isolate", "-O",
                 "sr3:scale=2"]) == 0
    out = capsys.readouterr().out
    assert "diffusion stages" in out
    line = next(row for row in out.splitlines() if row.startswith("sr3 ") and "calls" in row)
    assert f"/ {len(TINY_SR3_BETAS)} calls" in line  # one 8x8 tile, one call per step
