"""``edgesr build -b openvino -p int8 --calib``: an NNCF INT8 IR in the engine cache, run by the
OpenVINO runtime, keyed by the calibration set's content and the INT8 layout; bad inputs fail
with one line and leave no entry."""

import hashlib
import json
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from conftest import make_quantize_setup, smooth_image, torch_forward

pytest.importorskip("openvino", reason="openvino is not installed (pip install edgesr[openvino])")
pytest.importorskip("nncf", reason="nncf is not installed (pip install edgesr[quantize])")

import openvino as ov  # noqa: E402

from edgesr.calibration import build_calibration_set  # noqa: E402
from edgesr.cli import main  # noqa: E402
from edgesr.fidelity import psnr  # noqa: E402
from edgesr.runtimes import create_runtime  # noqa: E402
from edgesr.runtimes.engine_cache import MANIFEST  # noqa: E402
from edgesr.runtimes.registry import engine_backends  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(descriptor, ONNX path, calibration set file, a second one, cache folder)."""
    folder = tmp_path_factory.mktemp("int8")
    descriptor, onnx_path, calib, _ = make_quantize_setup("compact_x4", folder)
    other = build_calibration_set(count=3, tile=16, seed=1)
    return (descriptor, onnx_path, calib.save(folder / "calib.npz"),
            other.save(folder / "other.npz"), folder / "cache")


def _build(setup, *extra, calib=None) -> tuple[str, str]:
    """(what ``edgesr build ... -p int8`` said on stderr, the artifact path, its stdout)."""
    _, onnx_path, default_calib, _, cache = setup
    out, err = StringIO(), StringIO()  # not capsys: the module-scoped fixture below builds too
    with redirect_stdout(out), redirect_stderr(err):
        assert main(["build", str(onnx_path), "-b", "openvino", "-p", "int8", "--calib",
                     str(calib or default_calib), "--cache", str(cache), *extra]) == 0
    assert len(out.getvalue().splitlines()) == 1  # the path only
    return err.getvalue(), out.getvalue().strip()


@pytest.fixture(scope="module")
def built(setup):
    """The INT8 IR the CLI built with the default preset, and what it printed."""
    return _build(setup)


def _fake_quantize(xml) -> int:
    return sum(op.get_type_name() == "FakeQuantize"
               for op in ov.Core().read_model(str(xml)).get_ordered_ops())


def test_int8_engine_is_cached_quantized_and_close_to_fp32(setup, built):
    descriptor, _, calib, _, cache = setup
    out, artifact = built
    xml = Path(artifact)
    assert "openvino int8" in out and "built in" in out and xml.is_file()
    assert xml.with_suffix(".bin").is_file() and xml.parent.parent == cache / "openvino"
    key = json.loads((xml.parent / MANIFEST).read_text())["key"]
    assert key["precision"] == "int8" and json.loads(key["inputs"]) == {
        "calib_sha256": hashlib.sha256(calib.read_bytes()).hexdigest(),
        "keep": ["first", "tail"], "conv_only": True}
    assert _fake_quantize(xml) > 0  # an FP32 IR built by mistake has none
    x = np.stack([smooth_image(np.random.default_rng(i), 24, 32).transpose(2, 0, 1)
                  for i in range(2)])
    with create_runtime("openvino", xml) as rt:
        assert rt.info.scale == descriptor.scale
        got = rt.infer(x)
    assert 30.0 < psnr(got, torch_forward(descriptor, x)) < 99.0


def test_same_inputs_hit_the_cache_and_new_ones_build_new_entries(setup, built):
    _, _, calib, other, _ = setup
    _, first = built
    out, again = _build(setup)
    assert "(cached)" in out and again == first
    renamed = calib.with_name("renamed.npz")  # the key holds the content, not the path
    shutil.copy(calib, renamed)
    out, same = _build(setup, calib=renamed)
    assert "(cached)" in out and same == first
    out, recalibrated = _build(setup, calib=other)
    assert "built in" in out and recalibrated != first
    out, all_ops = _build(setup, "--preset", "all-ops")
    assert "built in" in out and all_ops not in (first, recalibrated)
    assert _fake_quantize(all_ops) > _fake_quantize(first)
    out, _ = _build(setup, "--preset", "all-ops")
    assert "(cached)" in out


def test_upscale_runs_the_built_ir(setup, built, tmp_path):
    from edgesr.imageio import read_image, write_image

    write_image(tmp_path / "in.png", smooth_image(np.random.default_rng(5), 20, 24))
    _, xml = built
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
                 "--model", xml, "--backend", "openvino", "--tile", "16", "--overlap", "4",
                 "-q"]) == 0
    assert read_image(tmp_path / "out.png").pixels.shape[:2] == (80, 96)


def _fails(setup, capsys, tmp_path, args, message):
    _, onnx_path, _, _, _ = setup
    cache = tmp_path / "cache"
    code = main(["build", str(onnx_path), "--cache", str(cache), *args])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    leftovers = [p for p in cache.rglob("*")
                 if p.suffix != ".lock" and p.name not in engine_backends()]
    assert leftovers == []  # only the backend folder and a lock file: no entry, no temp folder


@pytest.mark.parametrize(("args", "message"), [
    (["-b", "openvino", "-p", "int8"], "needs a calibration set: --calib"),
    (["-b", "openvino", "-p", "fp16", "--calib", "CALIB"], "takes no calibration set"),
    (["-b", "openvino", "-p", "fp32", "--exclude", "first"], "only int8 does"),
    (["-b", "tensorrt", "-p", "int8", "--calib", "CALIB"], "built from a Q/DQ .onnx"),
    (["-b", "openvino", "-p", "int8", "--calib", "MISSING"], "calibration set not found"),
    (["-b", "openvino", "-p", "int8", "--calib", "JUNK"], "not a calibration set"),
    (["-b", "openvino", "-p", "int8", "--calib", "CALIB", "--exclude", "nope"],
     "no node named 'nope'"),
    (["-b", "openvino", "-p", "fp16", "--preset", "all-ops"], "--preset is the layout of"),
])
def test_bad_inputs_fail_with_one_line_and_no_entry(setup, capsys, tmp_path, args, message):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    names = {"CALIB": str(setup[2]), "MISSING": str(tmp_path / "missing.npz"),
             "JUNK": str(tmp_path / "junk.npz")}
    _fails(setup, capsys, tmp_path, [names.get(a, a) for a in args], message)


def test_coreml_takes_no_calibration_set(setup, capsys, tmp_path):
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    _fails(setup, capsys, tmp_path, ["-b", "coreml", "-p", "int8", "--calib", str(setup[2])],
           "quantizes the weights only")


def test_missing_nncf_is_reported_like_a_missing_backend(setup, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf raises ImportError
    _fails(setup, capsys, tmp_path, ["-b", "openvino", "-p", "int8", "--calib", str(setup[2])],
           "OpenVINO INT8 needs nncf")
