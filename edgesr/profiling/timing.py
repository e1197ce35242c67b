"""Timing primitives: warm-up plus N timed runs (or a duration), latency percentiles, peak
memory, infer share.

``time_calls`` times any callable; ``LatencyStats`` summarises the samples (keeping them);
``MemoryWatch`` samples the process's resident set size on a background thread (the peak over a
block of code, not the lifetime maximum) and reads the CUDA allocator's peak when torch has a GPU;
``own_peak_rss_mb`` reads the kernel's exact RSS high-water mark of this process (Linux);
``InferTimer`` wraps a runtime so the Upscaler's time outside ``infer`` (tiling, blending) can
be told apart from the model's time.
"""

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgesr.runtimes.base import Runtime, RuntimeInfo

#: Fewest samples a percentile is reported from: below it, the "p99" of a few samples would
#: only be their maximum.
MIN_SAMPLES = {95: 20, 99: 100}


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one timed call over its samples, in milliseconds.

    ``p95_ms``/``p99_ms`` are None when there are fewer samples than ``MIN_SAMPLES`` asks
    (``percentile_note`` says so); ``spread`` is the samples' coefficient of variation
    (standard deviation / mean); ``samples_ms`` are the raw samples in the order they ran.
    """

    runs: int
    p50_ms: float
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float
    min_ms: float
    spread: float
    samples_ms: list[float]
    percentile_note: str | None = None

    @classmethod
    def from_seconds(cls, samples: list[float]) -> "LatencyStats":
        """Summarise wall-clock samples given in seconds."""
        ms = np.asarray(samples, dtype=np.float64) * 1e3
        p50, p95, p99 = np.percentile(ms, [50, 95, 99]).tolist()
        short = [q for q, need in MIN_SAMPLES.items() if len(ms) < need]
        note = (f"p{'/p'.join(map(str, short))} left out: {len(ms)} samples, p{short[0]} needs "
                f">= {MIN_SAMPLES[short[0]]} (use --duration or more --runs)" if short else None)
        mean = float(ms.mean())
        return cls(runs=len(samples), p50_ms=p50, p95_ms=None if 95 in short else p95,
                   p99_ms=None if 99 in short else p99, mean_ms=mean, min_ms=float(ms.min()),
                   spread=float(ms.std() / mean) if mean > 0 else 0.0,
                   samples_ms=ms.tolist(), percentile_note=note)


def time_calls(fn: Callable[[], object], *, warmup: int, runs: int,
               duration: float | None = None) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times, or with ``duration`` (seconds)
    for as long as that (at least ``runs`` times); return the seconds of each run."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    while len(samples) < max(1, runs) or (duration and sum(samples) < duration):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def own_peak_rss_mb() -> float | None:
    """This process's RSS high-water mark (``VmHWM``) in MiB; None where /proc has none."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class MemoryWatch:
    """Context manager: peak RSS (MiB) of this process inside the block, and CUDA peak if any.

    RSS is sampled every ``interval`` seconds with psutil, plus once at entry and exit.
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.gpu_peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample_once(self) -> None:
        rss_mb = self._process.memory_info().rss / (1 << 20)
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample_once()

    def __enter__(self) -> "MemoryWatch":
        import psutil

        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        self._process = psutil.Process()
        self._sample_once()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._sample_once()  # the sampler may have been starved of CPU inside the block
        cuda = _cuda()
        if cuda is not None:
            self.gpu_peak_mb = cuda.max_memory_allocated() / (1 << 20)


def _cuda():
    """torch.cuda when torch is imported and sees a GPU, else None."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda
    return None


class InferTimer(Runtime):
    """A runtime that forwards to an active runtime and adds up the seconds spent in ``infer``.

    Give it to the Upscaler in place of the runtime: end-to-end time minus ``seconds`` is the
    time spent outside the model (tile planning, padding, batching, blending).
    """

    def __init__(self, inner: Runtime):
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0
        self.calls = 0

    def reset(self) -> None:
        """Zero the accumulated time and call count."""
        self.seconds = 0.0
        self.calls = 0

    def activate_impl(self) -> RuntimeInfo:
        return self.inner.activate().info

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.inner.infer(batch)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out
