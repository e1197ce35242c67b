"""The engine cache under damage and kill -9: a damaged, foreign or half-built engine is never
served; what a killed build left is cleaned by the next build."""

import importlib.util
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from faults import count, tally
from tiny_models import make_tiny

from edgesr.errors import EdgesrError
from edgesr.export.onnx_export import export_onnx
from edgesr.models import model_from_state_dict
from edgesr.runtimes.engine_cache import MANIFEST, EngineCache, build_engine

pytestmark = pytest.mark.skipif(not importlib.util.find_spec("openvino"),
                                reason="openvino is not installed: no engine to build here")


def _output(artifact: Path) -> np.ndarray:
    """What an IR computes for a fixed input (IR files are not byte-identical across builds:
    OpenVINO numbers its node names per process)."""
    from edgesr.runtimes import create_runtime

    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    with create_runtime("openvino", artifact) as runtime:
        return runtime.infer(x)


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    """Two tiny ONNX models (the second one's IR is the 'foreign' engine)."""
    folder = tmp_path_factory.mktemp("engines")
    paths = []
    for seed in (0, 1):
        desc = model_from_state_dict(make_tiny("compact_x2", seed=seed).state_dict())
        paths.append(export_onnx(desc, folder / f"m{seed}.onnx", check=False).path)
    return paths


def _damages(entry: Path, foreign: Path) -> dict:
    """name -> a function damaging a built entry folder. (Not a forged manifest: whoever can
    write the cache can rewrite hashes too; the manifest catches damage and mix-ups.)"""
    manifest = entry / MANIFEST

    def edit(change):
        def apply():
            data = json.loads(manifest.read_text())
            change(data)
            manifest.write_text(json.dumps(data))
        return apply

    def write(name, data):
        return lambda: (entry / name).write_bytes(data(entry / name))

    return {
        "xml truncated": write("model.xml", lambda p: p.read_bytes()[:100]),
        "bin truncated": write("model.bin", lambda p: p.read_bytes()[:-7]),
        "bin flipped": write("model.bin", lambda p: bytes([p.read_bytes()[0] ^ 1])
                             + p.read_bytes()[1:]),
        "bin emptied": write("model.bin", lambda p: b""),
        "foreign bin": write("model.bin", lambda p: (foreign / "model.bin").read_bytes()),
        "foreign bin, files map emptied": lambda: (
            (entry / "model.bin").write_bytes((foreign / "model.bin").read_bytes()),
            edit(lambda d: d.update(files={}))()),
        "extra file": write("extra.bin", lambda p: b"x"),
        "manifest not json": lambda: manifest.write_text("{"),
        "manifest a list": lambda: manifest.write_text("[]"),
        "manifest missing": lambda: manifest.unlink(),
        "manifest key of another model": edit(lambda d: d["key"].update(model_sha256="0" * 64)),
        "manifest version changed": edit(lambda d: d["key"].update(backend_version="0")),
        "manifest files not a map": edit(lambda d: d.update(files=["model.bin"])),
        "artifact unlisted": edit(lambda d: d["files"].pop("model.xml")),
        "xml removed": lambda: (entry / "model.xml").unlink(),
        "bin removed": lambda: (entry / "model.bin").unlink(),
        "xml is a folder": lambda: ((entry / "model.xml").unlink(),
                                    (entry / "model.xml").mkdir()),
        "bin is a link elsewhere": lambda: ((entry / "model.bin").unlink(),
                                            (entry / "model.bin").symlink_to(
                                                foreign / "model.bin")),
        "entry is a file": lambda: (__import__("shutil").rmtree(entry),
                                    entry.write_bytes(b"not a folder")),
    }


def test_damaged_entries_are_rebuilt_never_served(tmp_path, onnx_pair):
    cache = EngineCache(tmp_path / "clean")
    clean = _output(build_engine("openvino", onnx_pair[0], cache=cache).artifact)
    foreign = build_engine("openvino", onnx_pair[1], cache=cache).artifact.parent
    served_damaged, errors = [], []
    damages = _damages(Path("/nonexistent"), foreign)
    for name in damages:
        root = tmp_path / name.replace(" ", "_").replace(",", "")
        entry = build_engine("openvino", onnx_pair[0], cache=EngineCache(root)).artifact.parent
        _damages(entry, foreign)[name]()
        try:
            again = build_engine("openvino", onnx_pair[0], cache=EngineCache(root))
        except EdgesrError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if not again.built or not np.array_equal(_output(again.artifact), clean):
            served_damaged.append(name)
    tally("engine-cache-damage", kinds=len(damages), rebuilt=len(damages) - len(errors)
          - len(served_damaged), clear_errors=len(errors), damaged_served=len(served_damaged))
    assert not served_damaged and not errors, (served_damaged, errors)


_CHILD = """
import sys, time
from pathlib import Path
from edgesr.runtimes.engine_cache import BuildOptions, EngineCache, build_engine
root, source, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if mode == "openvino":
    print("building", flush=True)
    build_engine("openvino", source, cache=EngineCache(root))
else:
    from dataclasses import replace
    from edgesr.runtimes.engine_cache import EngineKey
    key = EngineKey(model_sha256="ab" * 32, backend="slow", backend_version="1", precision="fp32",
                    profile="dynamic", device="any")
    def build(target):
        print("building", flush=True)
        with open(target, "wb") as fh:
            for i in range(40):
                fh.write(bytes([i]) * 65536)
                fh.flush()
                time.sleep(0.01)
    EngineCache(root).get_or_build(key, "model.plan", build)
"""


def test_kill_during_engine_builds(tmp_path, onnx_pair):
    """kill -9 at a random moment of a build (a real OpenVINO IR build, and a slow stub build
    that writes its artifact in 40 chunks): no truncated engine is ever served, and the next
    build leaves no temporary behind."""
    rounds = count(2, 20)
    rng = random.Random(3)
    served_truncated, litter, killed_in_build = [], [], 0
    reference = _output(build_engine("openvino", onnx_pair[0],
                                     cache=EngineCache(tmp_path / "ref")).artifact)
    for i in range(rounds):
        for mode in ("openvino", "stub"):
            root = tmp_path / f"{mode}{i}"
            child = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(onnx_pair[0]),
                                      mode], stdout=subprocess.PIPE, text=True)
            assert child.stdout.readline() == "building\n"
            time.sleep(rng.uniform(0, 0.4))
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed_in_build += child.returncode == -signal.SIGKILL
            if mode == "openvino":
                entry = build_engine("openvino", onnx_pair[0], cache=EngineCache(root))
                ok = np.array_equal(_output(entry.artifact), reference)
            else:
                from edgesr.runtimes.engine_cache import EngineKey

                key = EngineKey(model_sha256="ab" * 32, backend="slow", backend_version="1",
                                precision="fp32", profile="dynamic", device="any")
                entry = EngineCache(root).get_or_build(
                    key, "model.plan", lambda t: t.write_bytes(b"".join(
                        bytes([j]) * 65536 for j in range(40))))
                ok = entry.artifact.stat().st_size == 40 * 65536
            if not ok:
                served_truncated.append(f"{mode}{i}")
            folder = entry.artifact.parent.parent
            litter += [p.name for p in folder.iterdir() if p.name.startswith(".")]
    tally("kill-engine-build", builds=2 * rounds, killed_mid_build=killed_in_build,
          truncated_served=len(served_truncated), temporaries_left=len(litter))
    assert not served_truncated and not litter, (served_truncated, litter)
