"""The output conventions of the commands: ``--json`` prints one JSON document on stdout and
sends the human text to stderr; a command whose stdout is one value (``build``: the engine
path) prints only that there; library logs are kept off stdout (``stdout_to_stderr``)."""

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--json`` to ``parser``; ``what`` says what the document holds."""
    parser.add_argument("--json", action="store_true",
                        help=f"{what}; human text goes to stderr")


def emit(args: argparse.Namespace, document: Any, *, human: str = "",
         plain: str | None = None) -> None:
    """Print a command's result. With ``--json``: ``document`` as JSON on stdout, ``human`` on
    stderr. Without: ``plain`` on stdout and ``human`` on stderr when the command prints one
    value (``plain`` given), else ``human`` on stdout."""
    if getattr(args, "json", False):
        if human:
            print(human, file=sys.stderr)
        write_stdout(json.dumps(document, indent=1, default=str))
    elif plain is not None:
        if human:
            print(human, file=sys.stderr)
        write_stdout(plain)
    elif human:
        write_stdout(human)


def write_stdout(text: str) -> None:
    """Print ``text`` (a line) on stdout; a reader that stops early (``| head``) ends it
    quietly, not with a traceback."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # what is left goes nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout meanwhile (Python's ``sys.stdout`` and file
    descriptor 1, where C++ libraries write) to stderr."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptors 1 and 2 (an embedding host): Python's level only
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        _flush_c_stdio()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _flush_c_stdio() -> None:
    """Flush the C library's stdout buffer (what C++ libraries printed) where it is reachable."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):
        pass
