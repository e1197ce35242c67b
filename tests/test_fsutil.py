"""fsutil: atomic writes, stale temporaries, locks, hashes; errors.first_line."""

import hashlib
import os
import subprocess
import sys

import pytest

from edgesr.errors import EdgesrError, first_line
from edgesr.fsutil import (
    atomic_open,
    atomic_path,
    clean_stale_temps,
    file_lock,
    move_files,
    sha256_file,
    staging_dir,
    temp_path,
    write_text,
)


def test_atomic_open_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    with atomic_open(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_path_replaces_a_folder(tmp_path):
    target = tmp_path / "engine"
    target.mkdir()
    (target / "stale").write_text("x")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "model.xml").write_text("<net/>")
    assert sorted(p.name for p in target.iterdir()) == ["model.xml"]
    assert [p.name for p in tmp_path.iterdir()] == ["engine"]


def test_atomic_path_refuses_an_empty_write(tmp_path):
    with pytest.raises(EdgesrError, match="nothing was written"), atomic_path(tmp_path / "x"):
        pass


def test_temp_names_are_unique_per_writer(tmp_path):
    names = {temp_path(tmp_path / "a.png").name for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(f".a.png.{os.getpid()}-") for n in names)


def test_clean_stale_temps_removes_dead_writers_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    left = tmp_path / f".a.png.{dead}-0123abcd.tmp"
    left.write_bytes(b"partial")
    folder = tmp_path / f".entry.{dead}-89abcdef.tmp"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"x" * 10)
    live = temp_path(tmp_path / "b.png")
    live.write_bytes(b"being written")
    keep = tmp_path / ".hidden_user_file"
    keep.write_text("mine")
    removed = clean_stale_temps(tmp_path)
    assert sorted(removed) == sorted([left, folder])
    assert live.exists() and keep.exists()
    old = os.stat(live).st_mtime - 2 * 24 * 3600
    os.utime(live, (old, old))
    assert clean_stale_temps(tmp_path) == [live]


def test_file_lock_refuses_a_folder(tmp_path):
    (tmp_path / "entry.lock").mkdir()
    with pytest.raises(EdgesrError, match="expected a lock file"):
        file_lock(tmp_path / "entry.lock")
    with file_lock(tmp_path / "other.lock"):
        assert (tmp_path / "other.lock").exists()


def test_sha256_file(tmp_path):
    write_text(tmp_path / "f", "abc" * 1000)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_first_line_skips_source_locations():
    exc = RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\n"
                       "Check 'false' failed at src/frontends/common/src/frontend.cpp:54:\n"
                       "FrontEnd API failed with GeneralFailure:\nUnable to read the model\n")
    assert first_line(exc) == ("FrontEnd API failed with GeneralFailure: "
                               "Unable to read the model")
    assert first_line(ValueError("bad value\nmore")) == "bad value"
    assert first_line(KeyError()) == "KeyError"


def test_staging_dir_and_move_files(tmp_path):
    target = tmp_path / "out" / "model.xml"
    target.parent.mkdir()
    with staging_dir(target) as stage:
        assert stage.parent == target.parent and stage.name.startswith(".model.xml.")
        (stage / "model.bin").write_bytes(b"w")
        (stage / "model.xml").write_bytes(b"g")
        (stage / "left").write_bytes(b"x")
        move_files([(stage / "model.bin", target.with_suffix(".bin")),
                    (stage / "model.xml", target), (stage / "left", tmp_path / "new" / "left")])
        (stage / "unused").write_bytes(b"x")
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.bin", "model.xml"]
    assert target.read_bytes() == b"g" and (tmp_path / "new" / "left").is_file()
    with pytest.raises(ValueError), staging_dir(target) as stage:
        raise ValueError
    assert not stage.exists()


def test_first_line_of_a_kept_message():
    assert first_line("Exception from src/core.cpp:84:\nmodel is broken\nmore") == "model is broken"
    assert first_line("") == ""
