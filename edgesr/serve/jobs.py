"""The bounded work queue between requests and engines, and the jobs it runs.

Requests put jobs on a queue of ``Limits.queue_size``; a full queue refuses at once (429 with
Retry-After from the recent time per image) instead of piling up work the box cannot do.
``Limits.workers`` threads take jobs in order; each engine's ``Session`` lock keeps one call on
a backend at a time. ``stop`` refuses new jobs, lets the workers finish every queued and running
job, then returns: a graceful shutdown loses no accepted work.
"""

import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgesr.api import Session
from edgesr.errors import EdgesrError, ImageReadError, TilingError, first_line
from edgesr.fsutil import remove
from edgesr.serve.config import Limits
from edgesr.serve.metrics import Metrics
from edgesr.serve.uploads import RequestError

log = logging.getLogger("edgesr.serve")
#: Errors that are the image's fault (HTTP 400); any other failure is the server's (500).
BAD_INPUT = (ImageReadError, TilingError)


@dataclass(eq=False)
class Job:
    """One image to upscale: ``source`` (an upload in the work folder) to ``target``."""

    model: str
    source: Path
    target: Path
    size: tuple[int, int]  # input (width, height), from the header
    outscale: float | None = None
    id: str = field(default_factory=lambda: Job.new_id())
    state: str = "queued"  # queued, running, done, failed, cancelled
    error: str | None = None
    status: int = 200  # the HTTP status of the outcome
    created: float = field(default_factory=time.time)
    finished: float | None = None
    _callbacks: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cancelled: bool = False

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    @property
    def done(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from a worker thread) when the job ends; now if it has ended."""
        with self._lock:
            if not self.done:
                self._callbacks.append(callback)
                return
        callback()

    def cancel(self) -> None:
        """Nobody wants the result any more: skip the job if it has not started, and drop its
        output when it ends."""
        with self._lock:
            self._cancelled = True
            if self.done:
                remove(self.target)

    def describe(self) -> dict:
        return {"id": self.id, "state": self.state, "model": self.model, "error": self.error,
                "created": self.created, "finished": self.finished}

    def _finish(self, state: str, error: str | None = None, status: int = 200) -> None:
        with self._lock:
            self.state, self.error, self.status = state, error, status
            self.finished = time.time()
            if self._cancelled or state != "done":
                remove(self.target)
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class WorkQueue:
    """Jobs for ``engines`` (name -> loaded session), run by ``limits.workers`` threads."""

    def __init__(self, engines: dict[str, Session], limits: Limits, metrics: Metrics):
        self._engines = engines
        self._limits = limits
        self._metrics = metrics
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=limits.queue_size)
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._seconds_per_image = 1.0  # a running mean, for Retry-After
        self._lock = threading.Lock()
        self.kept: dict[str, Job] = {}  # /v1/jobs jobs, by id, until they expire
        self.accepting = False

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        for i in range(self._limits.workers):
            thread = threading.Thread(target=self._work, name=f"edgesr-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.accepting = True

    def stop(self) -> None:
        """Refuse new jobs, finish the queued and running ones, stop the workers."""
        self.accepting = False
        for _ in self._threads:
            self._queue.put(None)  # after every queued job
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def submit(self, job: Job, *, keep: bool = False) -> Job:
        """Queue ``job`` or refuse it: 503 while shutting down, 429 when the queue is full."""
        if not self.accepting:
            raise RequestError(503, "the server is shutting down")
        if keep:
            self.expire()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._metrics.rejected.inc()
            raise RequestError(429, f"the work queue is full ({self._limits.queue_size} images "
                                    "waiting); retry later",
                               {"Retry-After": str(self.retry_after())}) from None
        if keep:
            self.kept[job.id] = job
        self._metrics.queue_depth.set(self.depth)
        return job

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on by one image per worker."""
        with self._lock:
            waiting = self.depth + self._running
            return max(1, math.ceil(waiting * self._seconds_per_image / self._limits.workers))

    def expire(self) -> None:
        """Forget kept jobs that ended more than ``job_ttl_s`` ago, and delete their results."""
        now = time.time()
        for job_id, job in list(self.kept.items()):
            if job.finished and now - job.finished > self._limits.job_ttl_s:
                self.kept.pop(job_id, None)
                remove(job.target)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            self._metrics.queue_depth.set(self.depth)
            if job._cancelled:
                remove(job.source)
                job._finish("cancelled", "cancelled before it started", 499)
                continue
            with self._lock:
                self._running += 1
            self._metrics.running.inc()
            start = time.monotonic()
            try:
                self._run(job)
            finally:
                elapsed = time.monotonic() - start
                with self._lock:
                    self._running -= 1
                    self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * elapsed
                self._metrics.running.dec()
                self._metrics.upscale_seconds.labels(model=job.model).observe(elapsed)

    def _run(self, job: Job) -> None:
        session = self._engines[job.model]
        job.state = "running"
        try:
            session.upscale_file(job.source, job.target, outscale=job.outscale)
        except BAD_INPUT as exc:
            job._finish("failed", first_line(exc), 400)
        except EdgesrError as exc:
            log.error("job %s failed: %s", job.id, first_line(exc))
            job._finish("failed", first_line(exc), 500)
        except Exception as exc:  # a worker must outlive any one image
            log.exception("job %s failed", job.id)
            job._finish("failed", f"internal error: {first_line(exc)}", 500)
        else:
            width, height = job.size
            metrics = self._metrics
            metrics.tiles.labels(model=job.model).inc(session.tile_count(height, width))
            metrics.pixels.labels(model=job.model).inc(width * height)
            job._finish("done")
        finally:
            remove(job.source)
            self._metrics.images.labels(model=job.model, outcome=job.state).inc()
