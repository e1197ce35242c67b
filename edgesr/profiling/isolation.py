"""Run one benchmark case in a child process of its own, so that its peak memory is its alone.

The child is started with the ``spawn`` method (``fork`` does not mix with the threads of torch,
OpenMP and BLAS), gets a picklable ``CaseJob``, opens the case through the registry and sends
back the case dict and its end-to-end output. Its ``peak_rss_mb`` is the child's RSS high-water
mark (Linux ``VmHWM``: exact, and of the child alone; ``getrusage``'s ``ru_maxrss`` is not,
since Linux carries the parent's peak over ``exec``), elsewhere ``MemoryWatch``'s sampled peak.
``startup_rss_mb`` is the child's RSS once the interpreter, edgesr and the backend's library are
imported, before the model is opened. A child that raises or dies gives an ``unavailable`` case.
"""

import multiprocessing
import signal
import sys
import traceback
from dataclasses import dataclass

import numpy as np

from edgesr.errors import EdgesrError
from edgesr.profiling.runner import (
    BenchSettings,
    backend_options,
    empty_case,
    registry_factory,
    run_case,
)
from edgesr.profiling.timing import own_peak_rss_mb


@dataclass(frozen=True)
class CaseJob:
    """What a child process needs to measure one (backend, precision) case. ``flops`` (per LR
    pixel) and ``peak`` (the GEMM peak, GFLOP/s) are passed on to ``run_case``."""

    model: str | None
    backend: str
    precision: str
    settings: BenchSettings
    flops: float | None
    peak: float


def _child(job: CaseJob, conn) -> None:
    """The child process: measure ``job`` and send (case, output), or a reason it failed."""
    import psutil

    try:
        backend_options(job.backend, job.precision, job.settings)  # imports the backend
        startup = psutil.Process().memory_info().rss / (1 << 20)
        case, output = run_case(registry_factory(job.model, job.settings), job.backend,
                                job.precision, job.settings, job.settings.image, job.flops,
                                job.peak)
        if case["status"] == "ok":
            peak_rss = own_peak_rss_mb() or case["peak_rss_mb"]
            case.update(startup_rss_mb=startup, peak_rss_mb=peak_rss)
        conn.send((case, output))
    except EdgesrError as exc:
        conn.send(str(exc))
    except Exception as exc:  # whatever else fails is this case's failure, reported as its reason
        traceback.print_exc(file=sys.stderr)
        conn.send(f"the case's process failed: {type(exc).__name__}: {exc}")
    finally:
        conn.close()


def _exit_reason(code: int | None) -> str:
    """Why a child that sent nothing back ended, from its exit code."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the case's process was killed by {name}{hint}"
    return f"the case's process exited with code {code} before reporting"


def run_isolated(model: str | None, backend: str, precision: str, settings: BenchSettings,
                 flops: float | None, peak: float) -> tuple[dict, np.ndarray | None]:
    """Measure one case in a spawned child process: (case dict, end-to-end output or None).

    A case whose options already fail here (unknown backend, library missing, no such
    precision) is unavailable without starting a process.
    """
    options = settings.options.get(backend, {})
    try:
        backend_options(backend, precision, settings)
    except EdgesrError as exc:
        return empty_case(backend, precision, options, str(exc)), None
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    job = CaseJob(model=model, backend=backend, precision=precision, settings=settings,
                  flops=flops, peak=peak)
    process = context.Process(target=_child, args=(job, writer), daemon=True,
                              name=f"edgesr-bench-{backend}-{precision}")
    process.start()
    writer.close()  # so that the child's death ends ``recv`` with EOFError
    try:
        result = reader.recv()
    except EOFError:
        result = None
    finally:
        reader.close()
        process.join()
    if isinstance(result, tuple):
        return result
    return empty_case(backend, precision, options, result or _exit_reason(process.exitcode)), None
