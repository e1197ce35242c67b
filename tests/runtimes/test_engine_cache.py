"""Engine cache: hit, miss, build inputs, stale backend version, foreign entry, corrupt file,
atomic builds, one builder at a time, and a real OpenVINO IR build through build_engine."""

import hashlib
import json
import threading
import time
from dataclasses import replace

import pytest
from tiny_models import make_tiny

from edgesr.errors import BackendUnavailableError, EdgesrError
from edgesr.runtimes.engine_cache import (
    MANIFEST,
    BuildOptions,
    EngineCache,
    EngineCacheError,
    EngineKey,
    ShapeProfile,
    build_engine,
    model_sha256,
)

KEY = EngineKey(model_sha256="ab" * 32, backend="fake", backend_version="1.0",
                precision="fp16", profile=ShapeProfile.fixed(64).label, device="cpu")


class Builder:
    """Counts builds; writes ``payload`` as the artifact."""

    def __init__(self, payload: bytes = b"engine", delay: float = 0.0):
        self.calls = 0
        self.payload = payload
        self.delay = delay

    def __call__(self, target):
        self.calls += 1
        time.sleep(self.delay)
        target.write_bytes(self.payload)


def test_miss_then_hit(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    first = cache.get_or_build(KEY, "model.plan", build)
    assert first.built and first.artifact.read_bytes() == b"engine"
    assert first.artifact.parent.name == "abababababababab-fp16-b1_64x64-cpu"
    second = cache.get_or_build(KEY, "model.plan", build)
    assert not second.built and second.artifact == first.artifact and build.calls == 1
    assert cache.lookup(KEY, "model.plan") == first.artifact


def test_build_inputs_get_their_own_entry(tmp_path):
    cache = EngineCache(tmp_path)
    calibrated = replace(KEY, inputs='{"calib_sha256": "cd"}')
    assert calibrated.name.startswith("abababababababab-fp16-") and calibrated.name != KEY.name
    assert calibrated.name.endswith("-b1_64x64-cpu")
    plain = cache.get_or_build(KEY, "model.plan", Builder(b"plain"))
    entry = cache.get_or_build(calibrated, "model.plan", Builder(b"calibrated"))
    assert entry.built and entry.artifact != plain.artifact
    assert cache.lookup(KEY, "model.plan") == plain.artifact


def test_stale_backend_version_is_rebuilt_in_place(tmp_path):
    cache = EngineCache(tmp_path)
    old = cache.get_or_build(KEY, "model.plan", Builder(b"old"))
    newer = replace(KEY, backend_version="2.0")
    assert cache.lookup(newer, "model.plan") is None
    entry = cache.get_or_build(newer, "model.plan", Builder(b"new"))
    assert entry.built and entry.artifact == old.artifact and entry.artifact.read_bytes() == b"new"
    assert json.loads((entry.artifact.parent / MANIFEST).read_text())["key"]["backend_version"] \
        == "2.0"
    assert sorted(p.name for p in (tmp_path / "fake").iterdir()) == [
        entry.artifact.parent.name, entry.artifact.parent.name + ".lock"]


def test_foreign_entry_is_never_loaded(tmp_path):
    cache = EngineCache(tmp_path)
    other = replace(KEY, device="gpu0")
    built = cache.get_or_build(other, "model.plan", Builder(b"gpu engine"))
    # an entry copied under our name from another machine still names its own key
    target = cache.entry_dir(KEY)
    built.artifact.parent.rename(target)
    assert cache.lookup(KEY, "model.plan") is None
    assert cache.get_or_build(KEY, "model.plan", Builder(b"cpu engine")).artifact.read_bytes() \
        == b"cpu engine"


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "missing"])
def test_corrupt_entry_is_rebuilt(tmp_path, damage):
    cache = EngineCache(tmp_path)
    artifact = cache.get_or_build(KEY, "model.plan", Builder(b"engine bytes")).artifact
    if damage == "truncate":
        artifact.write_bytes(b"eng")
    elif damage == "flip":
        artifact.write_bytes(b"Engine bytes")
    elif damage == "manifest":
        (artifact.parent / MANIFEST).write_text("{not json")
    else:
        artifact.unlink()
    assert cache.lookup(KEY, "model.plan") is None
    build = Builder(b"engine bytes")
    assert cache.get_or_build(KEY, "model.plan", build).built and build.calls == 1


def test_failed_build_leaves_nothing(tmp_path):
    cache = EngineCache(tmp_path)

    def broken(target):
        target.write_bytes(b"half")
        raise EdgesrError("builder crashed")

    with pytest.raises(EdgesrError, match="crashed"):
        cache.get_or_build(KEY, "model.plan", broken)
    with pytest.raises(EngineCacheError, match="wrote no"):
        cache.get_or_build(KEY, "model.plan", lambda target: None)
    assert [p.name for p in (tmp_path / "fake").iterdir()] == [cache.entry_dir(KEY).name + ".lock"]


def test_two_builders_build_once(tmp_path):
    build = Builder(delay=0.3)
    results = []

    def worker():
        results.append(EngineCache(tmp_path).get_or_build(KEY, "model.plan", build))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert build.calls == 1 and sorted(r.built for r in results) == [False, False, True]


def test_profile_labels_and_validation():
    assert ShapeProfile.fixed(64, batch=4).label == "b4_64x64"
    dynamic = ShapeProfile(min_hw=(16, 16), opt_hw=(64, 64), max_hw=(128, 96), batch=(1, 2, 4))
    assert dynamic.label == "b1-2-4_16x16-64x64-128x96" and not dynamic.is_fixed
    with pytest.raises(EdgesrError, match="min <= opt <= max"):
        ShapeProfile(min_hw=(64, 64), opt_hw=(32, 32))


def test_build_engine_openvino_ir(tmp_path):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import model_from_state_dict

    onnx_path = tmp_path / "m.onnx"
    export_onnx(model_from_state_dict(make_tiny("compact_x2").state_dict()), onnx_path,
                check=False)
    cache = EngineCache(tmp_path / "cache")
    entry = build_engine("openvino", onnx_path, BuildOptions(precision="fp16"), cache=cache)
    assert entry.built and entry.artifact.name == "model.xml"
    assert entry.artifact.with_suffix(".bin").is_file()
    again = build_engine("openvino", onnx_path, BuildOptions(precision="fp16"), cache=cache)
    assert not again.built and again.artifact == entry.artifact
    with pytest.raises(EngineCacheError, match="builds from .onnx"):
        build_engine("openvino", tmp_path / "m.pth", cache=cache)
    with pytest.raises(BackendUnavailableError, match="builds no engines"):
        build_engine("torch", onnx_path, cache=cache)


def test_build_command_prints_where_the_engine_went(tmp_path, capsys):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from edgesr.cli import main
    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import model_from_state_dict

    onnx_path = tmp_path / "m.onnx"
    export_onnx(model_from_state_dict(make_tiny("compact_x2").state_dict()), onnx_path,
                check=False)
    args = ["build", str(onnx_path), "-b", "openvino", "-p", "fp32", "--cache",
            str(tmp_path / "c")]
    assert main(args) == 0
    first = capsys.readouterr()  # stdout: the path only; what happened: stderr
    assert "built in" in first.err and first.out.endswith("model.xml\n")
    assert len(first.out.splitlines()) == 1
    assert main(args) == 0
    second = capsys.readouterr()
    assert "(cached)" in second.err and second.out == first.out


def test_model_sha256_covers_weights_files_and_folders(tmp_path):
    graph = tmp_path / "unet.onnx"
    graph.write_bytes(b"graph")
    alone = model_sha256(graph)
    assert alone == hashlib.sha256(b"graph").hexdigest()
    (tmp_path / "unet.onnx.data").write_bytes(b"weights")  # external data: part of the model
    assert model_sha256(graph) == hashlib.sha256(b"graphweights").hexdigest()
    param = tmp_path / "m.param"
    param.write_bytes(b"layers")
    (tmp_path / "m.bin").write_bytes(b"blob")
    assert model_sha256(param) == hashlib.sha256(b"layersblob").hexdigest()
    folder_hash = model_sha256(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.json").write_text("{}")
    assert model_sha256(tmp_path) != folder_hash
    (tmp_path / "unet.onnx.data").write_bytes(b"other weights")
    assert len({model_sha256(graph), alone}) == 2 and model_sha256(tmp_path) != folder_hash


@pytest.mark.parametrize("tamper", ["emptied", "unlisted file", "artifact unlisted"])
def test_every_artifact_file_must_be_listed_and_hashed(tmp_path, tamper):
    """With the manifest's files map emptied, another model's model.bin dropped into the entry
    would be served as cached: a file the manifest does not list means rebuild."""
    cache = EngineCache(tmp_path)
    artifact = cache.get_or_build(KEY, "model.xml", Builder(b"<xml/>")).artifact
    folder = artifact.parent
    manifest = json.loads((folder / MANIFEST).read_text())
    if tamper == "emptied":
        manifest["files"] = {}
    elif tamper == "unlisted file":
        (folder / "model.bin").write_bytes(b"another model's weights")
    else:
        manifest["files"] = {"other.txt": hashlib.sha256(b"x").hexdigest()}
        (folder / "other.txt").write_bytes(b"x")
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert cache.lookup(KEY, "model.xml") is None
    assert cache.get_or_build(KEY, "model.xml", Builder(b"<xml/>")).built
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "model.xml"]


def test_a_folder_where_the_lock_file_belongs_is_one_clear_error(tmp_path):
    cache = EngineCache(tmp_path)
    folder = cache.entry_dir(KEY)
    folder.with_name(folder.name + ".lock").mkdir(parents=True)
    with pytest.raises(EdgesrError, match=r"\.lock: expected a lock file"):
        cache.get_or_build(KEY, "model.plan", Builder())


def test_stale_build_folders_and_old_entries_are_cleaned_on_the_next_run(tmp_path):
    import os
    import subprocess
    import sys

    from edgesr.fsutil import temp_path

    cache = EngineCache(tmp_path)
    folder = cache.entry_dir(KEY)
    folder.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    litter = [temp_path(folder), temp_path(folder, kind="old"), temp_path(folder.parent / "x")]
    for path in litter:  # as a killed build left them: named for a process that is gone
        path = path.with_name(path.name.replace(f".{os.getpid()}-", f".{dead}-"))
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "model.bin").write_bytes(b"53 MB of weights")
    live = temp_path(folder)  # this process's own: a build in progress in another thread
    live.mkdir()
    cache.get_or_build(KEY, "model.plan", Builder())
    names = sorted(p.name for p in folder.parent.iterdir())
    assert names == sorted([folder.name, folder.name + ".lock", live.name])


def test_copy_artifact_renames_companions_and_replaces_folders(tmp_path):
    from edgesr.runtimes.engine_cache import copy_artifact

    entry = tmp_path / "entry"
    (entry / "model.mlpackage" / "Data").mkdir(parents=True)
    (entry / "model.mlpackage" / "Data" / "weights").write_bytes(b"new")
    (entry / "model.plan").write_bytes(b"plan")
    (entry / "model.json").write_text("{}")
    (entry / "manifest.json").write_text("{}")
    written = copy_artifact(entry / "model.plan", tmp_path / "out" / "x4.plan")
    assert [p.name for p in written] == ["x4.json", "x4.plan"]  # files beside it, itself last
    assert (tmp_path / "out" / "x4.plan").read_bytes() == b"plan"
    old = tmp_path / "out" / "x2.mlpackage"
    (old / "stale").mkdir(parents=True)
    written = copy_artifact(entry / "model.mlpackage", old)
    assert written[-1] == old and (old / "Data" / "weights").read_bytes() == b"new"
    assert not (old / "stale").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "x2.json", "x2.mlpackage", "x2.plan", "x4.json", "x4.plan"]  # no temporary left
