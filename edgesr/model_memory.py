"""How much memory a model needs per tile on a backend: measured once in a child process, cached.

``measure_model_memory`` runs one inference on a square random tile in a child process of its
own (``python -m edgesr.model_memory``: a fresh interpreter, nothing forked or re-imported from
the caller) at two tile sizes, one child each, so no allocator state carries from one size to
the other. Each child loads the model, reads its RSS, resets its RSS high-water mark (Linux:
``/proc/self/clear_refs``; elsewhere RSS is sampled with ``MemoryWatch``), runs the tile
``RUNS`` times and reports the peak over the RSS before. The delta includes the input and output
tiles and whatever the backend allocates on its first runs (thread pools, arenas, kernel
caches), as at planning time the process has loaded the model but not run it. Host memory (RSS)
only: memory on a GPU is not counted. Children, and ``edgesr upscale --max-memory``, run with
``return_freed_memory``, so that freed tiles leave the RSS.

The tiles are the smallest tile ``streaming.auto_tile`` picks (32) and 128 pixels, rounded up to
the model's size multiple. From the deltas ``d1``, ``d2`` at ``p1 < p2`` pixels the figure is
``bytes_per_pixel = max(slope, d2 / p2)`` and ``fixed_bytes = max(0, d1 - bytes_per_pixel *
p1)``: a line on or above both points that rises at least as fast as between them. Backends
pick other kernels and allocation patterns at other sizes, so the true curve is not straight;
this line errs high for larger tiles (about 1.4-2x at 512 pixels for a 64-feature compact model)
rather than low. Figures are cached as JSON under ``cache_dir() / "memory"``, keyed by the model
file's sha256, the backend, its full config and the edgesr and backend library versions.
"""

import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from edgesr import __version__
from edgesr.errors import EdgesrError
from edgesr.fsutil import cache_dir, write_text

MEASURED_TILES = (32, 128)  # input pixels; the first is auto_tile's smallest tile
#: Backends that sample a diffusion model (``BackendEntry.diffusion``): a tile's memory does not
#: depend on the step count, so they are measured with ``MEASURE_STEPS``; it grows faster than
#: the tile's pixels (self-attention over all of them), so no tile above the largest measured
#: one is planned.
MEASURE_STEPS = 2
RUNS = 2  # inferences per tile: some backends (ONNX Runtime's arena) grow on the second
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MIB = 1 << 20


class MemoryMeasureError(EdgesrError):
    """A model's memory could not be measured (its child process failed)."""


@dataclass(frozen=True)
class ModelMemory:
    """Memory one inference adds over the loaded model: ``fixed_bytes`` plus ``bytes_per_pixel``
    per input pixel of the tile (per tile of a batch)."""

    bytes_per_pixel: float
    fixed_bytes: float
    largest_tile: int | None = None  # the line holds up to this tile only (None: any)

    def bytes_for(self, pixels: int) -> float:
        return self.fixed_bytes + self.bytes_per_pixel * pixels


def fit(points: list[tuple[int, float]]) -> ModelMemory:
    """The conservative line through two (pixels, bytes) measurements (see the module doc)."""
    (p1, d1), (p2, d2) = sorted(points)
    per_pixel = max((d2 - d1) / (p2 - p1), d2 / p2, 0.0)
    return ModelMemory(bytes_per_pixel=per_pixel, fixed_bytes=max(0.0, d1 - per_pixel * p1))


def measure_model_memory(model_path: str | os.PathLike, backend: str, options: dict | None = None,
                         *, multiple: int = 1) -> ModelMemory:
    """The memory ``backend`` (with ``options``) needs for one tile of ``model_path``: read from
    the cache, else measured in two child processes (announced on stderr) and cached."""
    from edgesr.runtimes.registry import entry

    model_path, options = Path(model_path), options or {}
    diffusion = entry(backend).diffusion
    if diffusion:
        options = {**options, "steps": MEASURE_STEPS}
    key = _cache_key(model_path, backend, options)
    path = cache_dir() / "memory" / f"{model_path.stem}-{backend}-{key}.json"
    try:
        cached = json.loads(path.read_text())
        return ModelMemory(cached["bytes_per_pixel"], cached["fixed_bytes"],
                           cached.get("largest_tile"))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or unreadable: measure again
    print(f"measuring {model_path.name} memory on {backend} (once; cached)", file=sys.stderr)
    tiles = [-(-t // multiple) * multiple for t in MEASURED_TILES]
    points = [(t * t, _run_child(model_path, backend, options, t)) for t in tiles]
    memory = fit(points)
    if diffusion:
        memory = replace(memory, largest_tile=tiles[-1])
    record = {**asdict(memory), "tiles": tiles, "deltas": [d for _, d in points]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(record, indent=1))
    except OSError as exc:  # an unwritable cache costs a measurement next time, not this run
        print(f"edgesr: cannot cache {path}: {exc}", file=sys.stderr)
    return memory


def _cache_key(model_path: Path, backend: str, options: dict) -> str:
    """16 hex digits of the sha256 of everything the figure depends on."""
    from edgesr.runtimes.engine_cache import model_sha256
    from edgesr.runtimes.registry import config_for, entry

    config = asdict(config_for(backend, **options))  # defaults filled in: {} == {"threads": 0}
    libraries = {}
    for dist in entry(backend).requires:
        try:
            libraries[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            libraries[dist] = None
    key = {"model": model_sha256(model_path), "backend": backend, "config": config,
           "edgesr": __version__, "libraries": libraries, "tiles": MEASURED_TILES, "runs": RUNS}
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run_child(model_path: Path, backend: str, options: dict, tile: int) -> float:
    """Bytes one ``tile`` x ``tile`` inference adds, measured in a child process."""
    command = [sys.executable, "-m", "edgesr.model_memory", str(model_path), backend,
               json.dumps(options), str(tile)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0:
        return float(done.stdout.split()[-1])  # a library may have printed before it
    if done.returncode < 0:
        reason = f"its process was killed by {signal.Signals(-done.returncode).name}"
    else:
        lines = done.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"its process exited with code {done.returncode}"
    raise MemoryMeasureError(f"cannot measure the memory of {model_path.name} on {backend} "
                             f"at tile {tile}: {reason}")


def _child(model_path: str, backend: str, options: dict, tile: int) -> float:
    """In the child process: the bytes ``RUNS`` inferences at ``tile`` add over the loaded model,
    each run's output alive during the next (as the tiler's pending tiles are)."""
    import psutil

    from edgesr.runtimes.registry import create_runtime

    return_freed_memory()
    with create_runtime(backend, model_path, **options) as runtime:
        shape = (1, runtime.info.in_channels, tile, tile)
        before = psutil.Process().memory_info().rss

        def run() -> list[np.ndarray]:  # each output stays alive while the next run runs
            return [runtime.infer(np.random.default_rng(0).random(shape, np.float32))
                    for _ in range(RUNS)]

        peak = _peak_rss(run)
    return max(0.0, peak - before)


def return_freed_memory() -> None:
    """Have glibc give freed blocks of 128 KiB or more back to the system at once.

    By default glibc raises that threshold (up to 32 MiB) each time such a block is freed, after
    which freed tiles stay in the heap and the process's RSS creeps up from tile to tile (by
    half or more over one tile's peak for a 64-feature model): fixing it keeps RSS close to
    what is alive, which is what a memory budget counts. No-op without glibc.
    """
    try:
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 128 << 10)
    except (OSError, AttributeError, TypeError):  # no mallopt here (macOS, Windows)
        pass


def _peak_rss(run) -> float:
    """Peak RSS (bytes) of this process while ``run()`` runs."""
    from edgesr.profiling.timing import MemoryWatch, own_peak_rss_mb

    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
    except OSError:
        with MemoryWatch() as watch:
            run()
        return watch.peak_rss_mb * _MIB
    run()
    return own_peak_rss_mb() * _MIB


if __name__ == "__main__":  # the child: MODEL BACKEND OPTIONS_JSON TILE -> bytes on stdout
    try:
        print(_child(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])))
    except Exception as exc:  # whatever fails is reported to the parent as the reason
        sys.exit(f"{type(exc).__name__}: {exc}")
