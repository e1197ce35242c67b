"""Run a function in a child process of its own, so that its peak memory is its alone.

The child is started with the ``spawn`` method (``fork`` does not mix with the threads of torch,
OpenMP and BLAS): the target and its arguments are pickled (a module-level function travels by
name, so this module imports none of its callers), and the result comes back through a pipe. A
child that raises or dies gives a one-line reason instead. ``runner.run_isolated`` measures one
benchmark case this way.
"""

import multiprocessing
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from edgesr.errors import EdgesrError


def _child(target: Callable[..., Any], args: tuple, conn) -> None:
    """The child process: send (result, None), or (None, the reason it failed)."""
    try:
        conn.send((target(*args), None))
    except EdgesrError as exc:
        conn.send((None, str(exc)))
    except Exception as exc:  # whatever else fails is this case's failure, reported as its reason
        traceback.print_exc(file=sys.stderr)
        conn.send((None, f"the case's process failed: {type(exc).__name__}: {exc}"))
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


def run_in_child(target: Callable[..., Any], args: tuple, *, name: str) -> tuple[Any, str | None]:
    """(``target(*args)``, None) from a spawned child process named ``name``, or (None, why it
    failed: its EdgesrError's message, another exception's type and message, or how the
    process ended). ``target`` must be a module-level function; it and ``args`` are pickled."""
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, args, writer), daemon=True, name=name)
    process.start()
    writer.close()  # so that the child's death ends ``recv`` with EOFError
    try:
        result = reader.recv()
    except EOFError:
        result = None
    finally:
        reader.close()
        process.join()
    return result if result is not None else (None, _exit_reason(process.exitcode))
