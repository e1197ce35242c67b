"""A folder of images on a Ray cluster: actors that each hold one loaded session.

Every actor loads the model once (``edgesr.load``) and upscales the (input, output) pairs it is
handed with ``Session.upscale_file``: the files ``edgesr upscale`` writes (plus the source's
EXIF), written atomically; a failing file is reported with its reason and
the run carries on. Inputs and outputs must be paths every node sees (a NAS share mounted at
the same place on each). Ray comes with ``pip install 'edgesr[ray]'``.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgesr.errors import EdgesrError, first_line
from edgesr.pipeline import FileResult


class _Worker:
    """A Ray actor's body: one loaded session."""

    def __init__(self, model: str | None, backend: str | None, tile: int, overlap: int,
                 options: dict[str, Any]):
        import edgesr

        self.session = edgesr.load(model, backend=backend, tile=tile, overlap=overlap,
                                   **options)

    def upscale(self, source: str, target: str, outscale: float | None,
                bit_depth: int | None) -> tuple[str, str | None, str | None]:
        try:
            self.session.upscale_file(source, target, outscale=outscale, bit_depth=bit_depth)
        except EdgesrError as exc:
            return source, None, first_line(exc)
        return source, target, None


def run_on_ray(pairs: list[tuple[Path, Path]], *, model: str | None = None,
               backend: str | None = None, tile: int = 256, overlap: int = 32,
               options: dict[str, Any] | None = None, actors: int = 2,
               address: str | None = None, outscale: float | None = None,
               bit_depth: int | None = None,
               on_result: Callable[[FileResult], None] | None = None) -> list[FileResult]:
    """Upscale ``pairs`` on ``actors`` Ray actors (one CPU each) of the cluster at ``address``
    (a local Ray instance when None, or the one this process already joined)."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise EdgesrError("--ray needs Ray: pip install 'edgesr[ray]'") from None
    if actors < 1:
        raise EdgesrError(f"--actors must be at least 1, not {actors}")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(_Worker)
    workers = [remote.remote(model, backend, tile, overlap, options or {})
               for _ in range(min(actors, len(pairs)) or 1)]
    results = []
    try:
        pool = ActorPool(workers)
        calls = pool.map_unordered(
            lambda actor, pair: actor.upscale.remote(str(pair[0]), str(pair[1]), outscale,
                                                     bit_depth), pairs)
        try:
            for source, target, error in calls:
                result = FileResult(Path(source), target and Path(target), error)
                results.append(result)
                if on_result:
                    on_result(result)
        except ray.exceptions.RayActorError as exc:  # the model did not load, or a node died
            raise EdgesrError(f"a Ray actor failed: {_reason(exc)}") from None
    finally:
        for worker in workers:
            ray.kill(worker)
        if started:
            ray.shutdown()
    return results


def _reason(exc: BaseException) -> str:
    """The error an actor raised, from the traceback text Ray wraps it in."""
    raised = re.findall(r"^\w*(?:Error|Exception): (.+)$", str(exc), flags=re.M)
    return raised[-1] if raised else first_line(exc)
