"""Helpers of the robustness suite: counts (small by default, the issue's with
``EDGESR_FULL_ROBUSTNESS=1``), tallies, a bound against hangs, a dead pid."""

import os
import subprocess
import sys
import threading

FULL = os.environ.get("EDGESR_FULL_ROBUSTNESS") == "1"
#: Generous bound on one test's work: reaching it means something hung.
HANG_S = 1800 if FULL else 300


def count(default: int, full: int) -> int:
    """``full`` under EDGESR_FULL_ROBUSTNESS=1, else ``default``."""
    return full if FULL else default


def tally(name: str, **figures) -> None:
    """Print one test's figures, e.g. ``robustness bad-images: images=1000 errors=...``."""
    print(f"\nrobustness {name}: " + " ".join(f"{k}={v}" for k, v in figures.items()))


def run_bounded(work, seconds: float = HANG_S):
    """``work()``'s result, run in a thread; fails the test if it does not finish (a hang)."""
    box: dict = {}

    def target():
        try:
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"hung: not done after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


def dead_pid() -> int:
    """The pid of a process that has exited (what a killed writer's temporaries carry)."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
