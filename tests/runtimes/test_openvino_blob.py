"""The device-compiled model ``edgesr build -b openvino --tile`` keeps beside its IR: the runtime
imports it when it matches, and compiles (saying why) when it does not."""

import json
import shutil

import numpy as np
import pytest
from tiny_models import make_tiny

pytest.importorskip("openvino", reason="openvino is not installed (pip install edgesr[openvino])")

from edgesr.export.onnx_export import export_onnx  # noqa: E402
from edgesr.models import model_from_state_dict  # noqa: E402
from edgesr.runtimes.engine_cache import (  # noqa: E402
    BuildOptions,
    EngineCache,
    ShapeProfile,
    build_engine,
    copy_artifact,
)
from edgesr.runtimes.openvino_blob import paths  # noqa: E402
from edgesr.runtimes.openvino_runtime import OpenVINOConfig, OpenVINORuntime  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(a copy of an fp32 IR built for tile 32 on CPU, the ONNX model it came from)."""
    folder = tmp_path_factory.mktemp("blob")
    onnx_path = folder / "m.onnx"
    export_onnx(model_from_state_dict(make_tiny("compact_x2").state_dict()), onnx_path,
                check=False)
    entry = build_engine("openvino", onnx_path,
                         BuildOptions(precision="fp32", profile=ShapeProfile.fixed(32)),
                         cache=EngineCache(folder / "cache"))
    return copy_artifact(entry.artifact, folder / "deploy" / "x2.xml")[-1], onnx_path


def _run(xml, x, **config):
    """(how it was compiled, info, output); OpenVINO's own model cache off, so a blob that does
    not match is compiled here."""
    with OpenVINORuntime(xml, OpenVINOConfig(**{"compile_cache": False, **config})) as rt:
        return rt.compiled_by, rt.info, rt.infer(x)


def _copy(built, tmp_path):
    xml = tmp_path / "copy.xml"
    for src in (built, *(built.with_suffix(s) for s in (".bin", ".blob", ".compiled.json"))):
        shutil.copy(src, xml.with_name("copy" + src.name[len(built.stem):]))
    return xml


def test_a_matching_compiled_model_is_imported_and_runs_the_same(built, rng):
    xml, onnx_path = built
    x = rng.random((2, 3, 32, 32), dtype=np.float32)
    how, info, out = _run(xml, x)
    assert how == "imported" and info.fixed_hw == (32, 32) and info.precision == "fp32"
    assert info.precision_note == ""
    config = OpenVINOConfig(precision="fp32", compile_cache=False)
    with OpenVINORuntime(onnx_path, config) as rt:  # compiled here
        assert np.abs(rt.infer(x) - out).max() < 1e-5
        assert rt.compiled_by == "compiled"


@pytest.mark.parametrize(("field", "value", "why"), [
    ("device_name", "Another CPU", "it is for device model Another CPU"),
    ("openvino", "2020.1.0", "it is for OpenVINO 2020.1.0"),
    ("blob_sha256", "0" * 64, "its blob is missing or damaged"),
])
def test_another_device_or_version_compiles_here_and_says_why(built, tmp_path, rng, field,
                                                                value, why):
    xml = _copy(built[0], tmp_path)
    sidecar = paths(xml)[1]
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**record, field: value}))
    x = rng.random((1, 3, 32, 32), dtype=np.float32)
    how, info, out = _run(xml, x)
    assert how == "compiled" and why in info.precision_note
    assert np.abs(out - _run(built[0], x)[2]).max() < 1e-5


def test_other_precision_compiles_and_no_blob_says_nothing(built, tmp_path, rng):
    x = rng.random((1, 3, 32, 32), dtype=np.float32)
    how, info, _ = _run(built[0], x, precision="fp16")
    assert how == "compiled" and "precision" in info.precision_note
    xml = _copy(built[0], tmp_path)
    paths(xml)[1].unlink()
    how, info, _ = _run(xml, x)
    assert how == "compiled" and "compiled model" not in info.precision_note


def test_a_rebuilt_ir_does_not_import_the_old_blob(built, tmp_path, rng):
    other = tmp_path / "other.onnx"  # same structure, other weights
    export_onnx(model_from_state_dict(make_tiny("compact_x2", seed=1).state_dict()), other,
                check=False)
    rebuilt = build_engine("openvino", other,
                           BuildOptions(precision="fp32", profile=ShapeProfile.fixed(32)),
                           cache=EngineCache(tmp_path / "cache")).artifact
    xml = _copy(built[0], tmp_path)
    shutil.copy(rebuilt.with_suffix(".bin"), xml.with_suffix(".bin"))
    how, info, _ = _run(xml, rng.random((1, 3, 32, 32), dtype=np.float32))
    assert how == "compiled" and "compiled from another IR" in info.precision_note


def test_start_benchmark_takes_each_path_it_names(built, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_openvino_start.py"
    out = tmp_path / "start.json"
    done = subprocess.run([sys.executable, str(script), "--model", str(built[1]), "--tile", "16",
                           "--precision", "fp32", "--runs", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["imported"]["compiled_by"] == "imported"  # the script checks it took it
    assert results["compiled"]["compiled_by"] == "compiled"
    assert results["cached"]["compiled_by"] == "cached"
    assert len(results["imported"]["samples"]) == 1 and "imported" in done.stdout
