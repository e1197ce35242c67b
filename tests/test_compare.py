"""edgesr compare (pairwise diffs with Polygraphy verdicts) and edgesr backends."""

import numpy as np
import pytest
import torch
from tiny_models import make_tiny

from edgesr.cli import main
from edgesr.commands.backends import probe
from edgesr.commands.compare import compare_outputs

pytest.importorskip("polygraphy", reason="polygraphy is not installed (pip install "
                    "edgesr[compare])")


def test_pairs_report_diff_psnr_and_verdict():
    a = np.zeros((1, 3, 4, 4), np.float32)
    pairs = compare_outputs({"x": a, "y": a + 1e-3, "z": a + 0.1}, atol=1e-2)
    table = {(p.a, p.b): p for p in pairs}
    assert set(table) == {("x", "y"), ("x", "z"), ("y", "z")}
    assert table["x", "y"].passed and not table["x", "z"].passed
    assert table["x", "y"].max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert table["x", "y"].psnr == pytest.approx(60.0, abs=0.01)
    assert compare_outputs({"x": a, "y": a.copy()}, atol=0)[0].psnr == float("inf")


def test_compare_cli_runs_available_and_skips_the_rest(tmp_path, monkeypatch, capsys):
    pytest.importorskip("openvino", reason="openvino is not installed")
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "compact_x2.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, ckpt)
    code = main(["compare", str(ckpt), "-r", "torch", "-r", "openvino:fp32", "-r",
                 "openvino:fp16", "-r", "tensorrt:fp16", "--size", "24"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "torch vs openvino:fp32" in out and "openvino:fp32 vs openvino:fp16" in out
    assert out.count("pass") == 3
    if probe("tensorrt")[0] is False:
        assert "tensorrt:fp16    skipped: tensorrt:" in out


def test_compare_needs_two_variants(tmp_path, capsys):
    ckpt = tmp_path / "compact_x2.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, ckpt)
    assert main(["compare", str(ckpt), "-r", "torch", "--size", "16"]) == 1
    assert "fewer than two variants" in capsys.readouterr().err


def test_backends_lists_every_backend_with_a_reason(capsys):
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names[:2] == ["torch", "onnxruntime"]
    assert {"openvino", "tensorrt", "coreml"} <= set(names)
    for line in lines:
        assert line.split()[1] in ("yes", "no") and len(line.split()) > 2
