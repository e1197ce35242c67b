"""Progress for long runs: a tqdm bar on a terminal, plain lines in logs.

When the stream (stderr by default) is a terminal, ``Progress`` draws a tqdm bar; otherwise it
prints one plain line each time another tenth of the work is done (``edgesr: tiles 3/10
(30%)``), with no carriage returns or escape codes, so a service's or a CI job's log stays
readable. ``write`` prints a line without breaking a bar. Disabled, it prints nothing but
``write``'s lines.
"""

import sys
from typing import TextIO

STEPS = 10  # plain lines per run: one each tenth of the total


class Progress:
    """Progress over ``total`` units (``unit``: "tile", "img"), labelled ``desc``."""

    def __init__(self, total: int, *, unit: str, desc: str | None = None, enabled: bool = True,
                 stream: TextIO | None = None, leave: bool = True):
        self.total, self.unit, self.desc = total, unit, desc or f"{unit}s"
        self.stream = stream or sys.stderr
        self.done, self._step = 0, 0
        self.enabled = enabled and total > 0
        self._bar = None
        if self.enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=desc, leave=leave, file=self.stream)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled:
            step = min(STEPS, self.done * STEPS // self.total)
            if step > self._step:
                self._step = step
                print(f"edgesr: {self.desc} {min(self.done, self.total)}/{self.total} "
                      f"({100 * step // STEPS}%)", file=self.stream, flush=True)

    def write(self, line: str, file: TextIO | None = None) -> None:
        """Print ``line`` (to ``file``, default the progress stream) without breaking a bar."""
        if self._bar is not None:
            self._bar.write(line, file=file or self.stream)
        else:
            print(line, file=file or self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
