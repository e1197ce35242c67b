"""A watch folder: every image that lands in a folder is upscaled once into another.

Polling (it works on every NAS share, SMB and NFS included): a file is taken once its size and
modification time have stayed the same for ``settle_s`` (an upload still being written keeps
changing), or at first sight when it was last modified longer ago than that. Outputs are written
atomically. What is done and what failed is recorded in ``OUT/.edgesr-watch.json`` (rewritten
atomically after each file), keyed by file name, size and mtime: a restart neither redoes nor
loses a file, a file replaced by a new version is done again, and a bad file is logged, listed
with its reason and retried only when it changes. One watcher per output folder (a file lock).
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Event

from edgesr.api import Session
from edgesr.errors import EdgesrError, first_line
from edgesr.fsutil import clean_stale_temps, file_lock, write_text
from edgesr.imageio import list_images

MANIFEST = ".edgesr-watch.json"
LOCK = ".edgesr-watch.lock"
log = logging.getLogger("edgesr.watch")


@dataclass(frozen=True)
class WatchResult:
    """One file handled: its output, or why it failed."""

    source: Path
    target: Path | None
    error: str | None = None


class Watcher:
    """Upscale the images of ``source`` into ``target`` with ``session``; ``ext``: output
    extension (default: the input's); ``on_result`` is called after each file."""

    def __init__(self, session: Session, source: Path, target: Path, *, ext: str | None = None,
                 outscale: float | None = None, settle_s: float = 2.0, poll_s: float = 1.0,
                 on_result: Callable[[WatchResult], None] | None = None):
        source, target = Path(source), Path(target)
        if not source.is_dir():
            raise EdgesrError(f"{source}: not a folder")
        if source.resolve() == target.resolve():
            raise EdgesrError(f"{target}: the output folder must differ from the watched one")
        if ext and not ext.startswith("."):
            ext = f".{ext}"
        self.session, self.source, self.target = session, source, target
        self.ext, self.outscale = ext, outscale
        self.settle_s, self.poll_s = settle_s, poll_s
        self.on_result = on_result
        self.manifest = target / MANIFEST
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}  # name -> (key, since)
        self.done: dict[str, dict] = {}
        self.failed: dict[str, dict] = {}

    def run(self, *, once: bool = False, stop: Event | None = None) -> None:
        """Watch until ``stop`` is set (or, with ``once``, until every file there has been
        handled)."""
        self.target.mkdir(parents=True, exist_ok=True)
        try:
            lock = file_lock(self.target / LOCK, timeout=0)
            lock.acquire()
        except Exception as exc:  # filelock.Timeout
            raise EdgesrError(f"{self.target}: another edgesr watch writes here") from exc
        try:
            clean_stale_temps(self.target)
            self._load()
            stop = stop or Event()
            while not stop.is_set():
                for path in self.scan():
                    if stop.is_set():
                        break
                    self._process(path)
                if once and not self._seen:
                    return
                stop.wait(self.poll_s)
        finally:
            lock.release()

    def scan(self) -> list[Path]:
        """The files ready now: new or changed since recorded, and no longer growing."""
        ready, now, names = [], time.monotonic(), set()
        for path in list_images(self.source):
            try:
                stat = path.stat()
            except OSError:  # gone meanwhile
                continue
            name, key = path.name, (stat.st_size, stat.st_mtime_ns)
            names.add(name)
            if self._recorded(name, key):
                self._seen.pop(name, None)
                continue
            seen = self._seen.get(name)
            if seen is None:
                old = time.time() - stat.st_mtime >= self.settle_s
                self._seen[name] = (key, now)
                if old:
                    ready.append(path)
            elif seen[0] != key:
                self._seen[name] = (key, now)
            elif now - seen[1] >= self.settle_s:
                ready.append(path)
        for name in set(self._seen) - names:  # deleted before it settled
            del self._seen[name]
        return ready

    def output_for(self, path: Path) -> Path:
        return self.target / f"{path.stem}{self.ext or path.suffix}"

    def _recorded(self, name: str, key: tuple[int, int]) -> bool:
        entry = self.done.get(name) or self.failed.get(name)
        return entry is not None and (entry["size"], entry["mtime_ns"]) == key

    def _process(self, path: Path) -> None:
        stat = path.stat()
        key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        target = self.output_for(path)
        self._seen.pop(path.name, None)
        try:
            self.session.upscale_file(path, target, outscale=self.outscale)
        except EdgesrError as exc:
            error = first_line(exc)
            log.warning("skipped %s: %s", path, error)
            self.failed[path.name] = {**key, "error": error}
            self.done.pop(path.name, None)
            result = WatchResult(path, None, error)
        else:
            log.info("%s -> %s", path, target)
            self.done[path.name] = {**key, "output": target.name}
            self.failed.pop(path.name, None)
            result = WatchResult(path, target)
        self._save()
        if self.on_result:
            self.on_result(result)

    def _load(self) -> None:
        """Read the manifest; an output newer than its input, written just before a crash that
        kept it out of the manifest, counts as done."""
        if self.manifest.is_file():
            try:
                state = json.loads(self.manifest.read_text())
                self.done, self.failed = dict(state["done"]), dict(state["failed"])
            except (ValueError, KeyError, TypeError) as exc:
                raise EdgesrError(f"{self.manifest}: unreadable watch record ({first_line(exc)});"
                                  " move it away to start over") from None
        for path in list_images(self.source):
            target, stat = self.output_for(path), path.stat()
            if (path.name not in self.done and target.is_file()
                    and target.stat().st_mtime_ns >= stat.st_mtime_ns):
                self.done[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                        "output": target.name}

    def _save(self) -> None:
        write_text(self.manifest, json.dumps({"done": self.done, "failed": self.failed},
                                             indent=1, sort_keys=True))
