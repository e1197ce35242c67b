"""Files written whole or not at all, file locks, file hashes and the cache folder: one home each.

Every temporary file or folder edgesr makes beside a target is named
``.<target name>.<pid>-<random>.tmp<suffix>``: unique per writer (two processes writing the same
target never share one), hidden, and carrying the writer's process id, so ``clean_stale_temps``
can remove what a killed writer left without touching a live writer's file.
"""

import hashlib
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import filelock

from edgesr.errors import EdgesrError

#: Temporaries older than this are stale even when their writer's pid is alive (pids are reused).
STALE_AFTER_S = 24 * 3600
_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.(tmp|old)(\.[A-Za-z0-9]+)?$")


def cache_dir() -> Path:
    """Where derived artifacts (exports, engines, measurements) live: ``$EDGESR_CACHE`` or
    ``~/.cache/edgesr``."""
    root = os.environ.get("EDGESR_CACHE") or Path.home() / ".cache" / "edgesr"
    return Path(root)


def temp_path(target: str | Path, suffix: str = "", kind: str = "tmp") -> Path:
    """A fresh hidden sibling of ``target`` for one writer (see the module docstring)."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}{suffix}")


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s content at (a file or a folder); on leaving
    without an error it replaces ``target`` in one rename, else it is removed.

    ``suffix`` is kept at the end of the temporary name for writers that need an extension
    (``.xml``, ``.mlpackage``). An existing folder at ``target`` is moved aside and removed.
    """
    target = Path(target)
    tmp = temp_path(target, suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise EdgesrError(f"{target}: nothing was written")
        if tmp.is_dir():
            replace_dir(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        remove(tmp)


@contextmanager
def atomic_open(target: str | Path) -> Iterator[BinaryIO]:
    """A binary file opened for writing ``target`` whole: flushed, fsynced and renamed into
    place on success, removed on any error."""
    with atomic_path(target) as tmp:
        with open(tmp, "xb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_open(target) as fh:
        fh.write(data)


def write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    write_bytes(target, text.encode())


def replace_dir(src: Path, dst: Path) -> None:
    """Rename folder ``src`` to ``dst``, moving an existing ``dst`` aside and removing it."""
    if dst.exists():
        old = temp_path(dst, kind="old")
        os.replace(dst, old)
        remove(old)
    os.replace(src, dst)


@contextmanager
def staging_dir(target: str | Path) -> Iterator[Path]:
    """A fresh hidden folder beside ``target`` (named as ``temp_path`` names it) to build files
    in before ``move_files`` renames them into place; removed on leaving, with what is left."""
    tmp = temp_path(target)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        remove(tmp)


def move_files(moves: Iterable[tuple[Path, Path]]) -> None:
    """Rename staged files (a temporary folder's, on the targets' file system) onto their
    targets, in order, making the targets' folders: each lands whole, so put a file that names
    another after it (an IR's ``.bin`` before its ``.xml``, weights before their graph)."""
    for src, dst in moves:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


class CloseOrAbort:
    """A writer used as a context manager: ``close()`` when the block ends normally,
    ``abort()`` (drop the partial output) when it raises."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class StagedFile:
    """A file written piece by piece under its own temporary name beside ``target``: ``commit``
    flushes, fsyncs and renames it over ``target``; ``discard`` removes it. For writers that
    outlive a ``with`` block (the PNG and TIFF row writers); OSError when it cannot be made."""

    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.tmp = temp_path(self.target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.file: BinaryIO = open(self.tmp, "xb")  # closed by commit() or discard()

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.target)

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass  # the buffer's flush failed (a full disk): the file goes anyway
        remove(self.tmp)


def remove(path: Path) -> None:
    """Remove a file or folder if it is there; never raises (cleanup must not mask an error)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def regular_file(path: str | os.PathLike, error: type[EdgesrError] = EdgesrError,
                 what: str = "file") -> Path:
    """``path`` if it is a regular file (after symbolic links), else one ``error`` line: a FIFO
    would block its reader forever and a device never end, so neither is ever opened."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise error(f"{path}: not a regular file (a folder, FIFO or device)")
    return path


def file_lock(path: str | Path, timeout: float = -1) -> filelock.FileLock:
    """An exclusive inter-process lock on ``path`` (created if missing), for ``with``; reentrant
    within a thread, exclusive across threads and processes. ``timeout`` < 0 waits forever."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise EdgesrError(f"{path}: expected a lock file, found something else; remove it")
    return filelock.FileLock(str(path), timeout=timeout, thread_local=False)


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: str | Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporaries in ``folder`` (not recursive) left by writers that are gone: their
    pid is not running on this machine, or they are older than ``max_age_s``. Returns what was
    removed; a folder that cannot be read is left alone."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match:
            continue
        try:
            age = now - entry.lstat().st_mtime
        except OSError:
            continue
        pid = int(match["pid"])
        if (pid != os.getpid() and not _pid_alive(pid)) or age > max_age_s:
            remove(entry)
            removed.append(entry)
    return removed
