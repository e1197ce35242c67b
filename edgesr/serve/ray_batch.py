"""A folder of images on a Ray cluster with Ray Data.

The run is a dataset of (source, target) path rows mapped by ``map_batches`` through
:class:`FileUpscaler`, a callable class: Ray Data keeps a fixed pool of ``actors`` actors (one
CPU each), each holding one session loaded once (``edgesr.load``), and gives them one file at a
time. Each file is written by ``Session.upscale_file`` (the file ``edgesr upscale`` writes, plus
the source's EXIF, atomically) and comes back as one result row: its error is empty when the file
was written, else the one-line reason, and the run carries on. Inputs and outputs must be paths
every node sees (a NAS share mounted at the same place on each). Ray Data comes with
``pip install 'edgesr[cluster]'``.
"""

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgesr.errors import EdgesrError, first_line
from edgesr.pipeline import FileResult

#: At most this many dataset blocks: one file per block (so the actors share the work file by
#: file) up to this count, beyond which the per-block bookkeeping is not worth it.
MAX_BLOCKS = 4096


class FileUpscaler:
    """Ray Data's callable class: one session per actor; a batch of (source, target) rows in,
    one result row per file out (``error`` empty when the file was written; ``ran``: what the
    actor runs, ``Session.describe()``, since nodes may differ).

    A model that does not load is not raised from the constructor (Ray would report it as a
    dead actor, its reason buried in a traceback): every row then says so (``loaded`` false)
    and the driver stops the run with that one line."""

    def __init__(self, model: str | None, settings: dict[str, Any], outscale: float | None,
                 bit_depth: int | None):
        import edgesr

        self.outscale, self.bit_depth = outscale, bit_depth
        self.session, self.load_error, self.ran = None, "", ""
        try:
            self.session = edgesr.load(model, **settings)
            self.ran = f"{self.session.describe()}; model {self.session.model.name}"
        except EdgesrError as exc:
            self.load_error = first_line(exc)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = zip(batch["source"], batch["target"], strict=True)
        errors = [self.load_error or self._one(str(s), str(t)) for s, t in pairs]
        return {"source": batch["source"], "target": batch["target"],
                "error": np.array(errors, dtype=object),
                "loaded": np.full(len(errors), self.session is not None),
                "ran": np.full(len(errors), self.ran, dtype=object)}

    def _one(self, source: str, target: str) -> str:
        try:
            self.session.upscale_file(source, target, outscale=self.outscale,
                                      bit_depth=self.bit_depth)
        except EdgesrError as exc:
            return first_line(exc)
        except MemoryError:
            return f"{source}: out of memory on this node; lower the tile size"
        return ""


def run_on_ray(pairs: list[tuple[Path, Path]], *, model: str | None = None, actors: int = 2,
               address: str | None = None, outscale: float | None = None,
               bit_depth: int | None = None,
               on_result: Callable[[FileResult], None] | None = None,
               on_engine: Callable[[str], None] | None = None,
               **settings: Any) -> list[FileResult]:
    """Upscale ``pairs`` on ``actors`` Ray actors (one CPU each) of the cluster at ``address``
    (a local Ray instance when None, or the one this process already joined); ``settings``
    are ``edgesr.load``'s (backend, precision, device, tile, overlap, threads, ...).
    ``on_result`` sees each file's result as it comes back, in completion order; ``on_engine``
    each distinct line saying what an actor runs (backend, device, precision; model)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise EdgesrError("--ray needs Ray Data: pip install 'edgesr[cluster]'") from None
    if actors < 1:
        raise EdgesrError(f"--actors must be at least 1, not {actors}")
    if not pairs:
        return []
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    results, engines = [], set()
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # and not its hint that they are off:
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        rows = ray.data.from_items(
            [{"source": str(s), "target": str(t)} for s, t in pairs],
            override_num_blocks=min(len(pairs), MAX_BLOCKS))
        done = rows.map_batches(
            FileUpscaler, batch_size=1, batch_format="numpy", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=min(actors, len(pairs))),
            fn_constructor_kwargs={"model": model, "settings": settings, "outscale": outscale,
                                   "bit_depth": bit_depth})
        for row in _rows(done):
            if not row["loaded"]:
                raise EdgesrError(f"the model did not load on a Ray actor: {row['error']}")
            if on_engine and row["ran"] not in engines:
                engines.add(row["ran"])
                on_engine(row["ran"])
            result = FileResult(Path(row["source"]), None if row["error"] else Path(row["target"]),
                                row["error"] or None)
            results.append(result)
            if on_result:
                on_result(result)
    finally:
        if started:
            ray.shutdown()
    return results


def _rows(dataset) -> Iterator[dict[str, Any]]:
    """The dataset's rows as they finish; a failure of Ray's own (a node lost for good, ...) as
    one line."""
    try:
        yield from dataset.iter_rows()
    except Exception as exc:
        raise EdgesrError(f"the Ray run failed: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The error an actor raised, from the traceback text Ray wraps it in."""
    raised = re.findall(r"^\w*(?:Error|Exception): (.+)$", str(exc), flags=re.M)
    return raised[-1] if raised else first_line(exc)
