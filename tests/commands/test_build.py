"""``edgesr build``: options each backend takes or refuses, ``-o``, stdout holding the path only
(or one JSON document), library logs kept off stdout."""

import json

import pytest

from edgesr.cli import main
from edgesr.runtimes.engine_cache import (
    BuildOptions,
    EngineCacheError,
    ShapeProfile,
    check_options,
)
from edgesr.runtimes.registry import BUILD_OPTIONS, entries

ENGINE_BACKENDS = [name for name, e in entries().items() if e.engine is not None]
ASKED = {"tile": BuildOptions(profile=ShapeProfile.fixed(32)),
         "batch": BuildOptions(profile=ShapeProfile(batch=(1, 2, 2))),
         "device": BuildOptions(device="0")}


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
@pytest.mark.parametrize("option", sorted(BUILD_OPTIONS))
def test_every_engine_backend_takes_or_refuses_each_option(backend, option):
    spec = entries()[backend].engine
    if option in spec.takes:
        assert check_options(backend, ASKED[option]) == ""
    else:
        message = f"{backend} builds take no {BUILD_OPTIONS[option]}"
        with pytest.raises(EngineCacheError, match=message):
            check_options(backend, ASKED[option])


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from tiny_models import make_tiny

    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import model_from_state_dict

    path = tmp_path_factory.mktemp("build") / "m.onnx"
    export_onnx(model_from_state_dict(make_tiny("compact_x2").state_dict()), path, check=False)
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["--batch", "2"], "openvino builds take no --batch (it takes --tile, --device): OpenVINO "
     "runs one tile per infer request"),
    (["--device", "CPU"], "--device is the device the compiled model is made for, which needs "
     "a fixed --tile"),
    (["--tile", "32", "--device", "NOPE"], "device 'NOPE' not found"),
    (["-o", "x.plan"], "this backend writes a .xml engine"),
])
def test_openvino_refuses_what_it_cannot_honour_in_one_line(onnx_model, tmp_path, capsys, args,
                                                           message):
    code = main(["build", str(onnx_model), "-b", "openvino", "-p", "fp32", "--cache",
                 str(tmp_path / "c"), *args])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_build_prints_only_the_path_and_writes_output_whole(onnx_model, tmp_path, capfd):
    out = tmp_path / "deploy" / "x2.xml"
    args = ["build", str(onnx_model), "-b", "openvino", "-p", "fp16", "--tile", "32",
            "--cache", str(tmp_path / "c"), "-o", str(out)]
    assert main(args) == 0
    captured = capfd.readouterr()  # file descriptors too: OpenVINO's own logs
    assert captured.out == f"{out}\n"
    assert "built in" in captured.err
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == ["x2.bin", "x2.blob", "x2.compiled.json", "x2.xml"]  # no temporary left
    sidecar = json.loads((out.parent / "x2.compiled.json").read_text())
    assert sidecar["device"] == "CPU" and sidecar["shape"] == [1, 3, 32, 32]
    assert main([*args, "--json"]) == 0
    captured = capfd.readouterr()
    doc = json.loads(captured.out)
    assert doc["path"] == str(out) and doc["built"] is False and doc["profile"] == "b1_32x32"
    assert doc["precision"] == "fp16" and doc["device"].startswith("CPU-")
    assert doc["files"][-1] == str(out) and "cached" in captured.err


def test_library_output_goes_to_stderr(capfd):
    import os

    from edgesr.commands.jsonout import stdout_to_stderr

    with stdout_to_stderr():
        print("from python")
        os.write(1, b"from C\n")
    print("result")
    captured = capfd.readouterr()
    assert captured.out == "result\n"
    assert "from python" in captured.err and "from C" in captured.err
