"""Whether a benchmark figure can be trusted, and which precision really ran.

A figure is marked ``"unreliable": reason`` (and warned about) when other processes used a
share of the CPUs while it was measured (``CpuWatch``: the machine's busy CPU time minus this
process's own, over the case), when its samples spread too far or are too few to tell, when
its GFLOP/s exceed the measured FP32 GEMM peak (a disturbed peak or timing, or a backend
whose fast convolutions, Winograd say, do fewer FLOPs than counted: compare latencies then),
or when the ratio is to an unreliable baseline row. The load average before and after each case
is recorded beside it.
"""

import os
import time

import psutil

#: Coefficient of variation of a row's samples above which it is unreliable.
MAX_SPREAD = 0.15
#: Share of all CPUs other processes may use during a case before its figures are unreliable.
MAX_OTHER_CPU = 0.20
#: Fewest samples whose spread can be judged.
MIN_SPREAD_SAMPLES = 3
#: 1-minute load average per usable core above which the machine is busy before a run.
MAX_LOAD_PER_CORE = 0.5


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def busy_machine(load: list[float] | None) -> str | None:
    """Why the machine is too busy to start measuring, from its load average, or None."""
    cores = usable_cores()
    if load and load[0] > MAX_LOAD_PER_CORE * cores:
        return f"load average {load[0]:.2f} on {cores} usable cores before the run"
    return None


class CpuWatch:
    """Context manager: load average before and after a block, and the share of all CPUs that
    other processes used during it (``as_dict``)."""

    def __enter__(self) -> "CpuWatch":
        self._process = psutil.Process()
        self.before = loadavg()
        self._start = (time.perf_counter(), _busy(psutil.cpu_times()), self._own())
        return self

    def __exit__(self, *exc_info) -> None:
        wall0, busy0, own0 = self._start
        wall = time.perf_counter() - wall0
        other = _busy(psutil.cpu_times()) - busy0 - (self._own() - own0)
        capacity = wall * (psutil.cpu_count() or 1)
        self.other_share = max(0.0, other / capacity) if capacity > 0 else None
        self.after = loadavg()

    def _own(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system

    def as_dict(self) -> dict:
        return {"loadavg_before": self.before, "loadavg_after": self.after,
                "other_cpu_share": self.other_share}

    def reason(self) -> str | None:
        """Why the block's figures are unreliable because of other processes, or None."""
        if self.other_share is not None and self.other_share > MAX_OTHER_CPU:
            return (f"other processes used {self.other_share:.0%} of the CPUs during the case "
                    f"(limit {MAX_OTHER_CPU:.0%})")
        return None


def _busy(times) -> float:
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def row_reasons(row: dict, peak: float, precision: str | None) -> list[str]:
    """Why a per-tile row is unreliable: too few samples, their spread, GFLOP/s above the
    FP32 GEMM ``peak`` (judged for FP32 rows only: int8 and bf16 kernels may pass it)."""
    reasons = []
    if row["runs"] < MIN_SPREAD_SAMPLES:
        reasons.append(f"only {row['runs']} sample(s): their spread cannot be judged")
    elif row["spread"] > MAX_SPREAD:
        reasons.append(f"samples spread {row['spread']:.0%} (coefficient of variation; limit "
                       f"{MAX_SPREAD:.0%})")
    if row["gflops"] and peak and row["gflops"] > peak and precision in (None, "fp32"):
        reasons.append(f"{row['gflops']:.1f} GFLOP/s exceeds the measured FP32 GEMM peak "
                       f"{peak:.1f} GFLOP/s (a disturbed peak or timing, or fast convolutions "
                       "doing fewer FLOPs than counted: compare latencies)")
    return reasons


def effective_precision(runtime) -> str | None:
    """The precision an active runtime reports it ran: its ``RuntimeInfo.precision`` (fp32,
    fp16, bf16, int8, mixed), or None when the backend does not report one. Read it after the
    runs it labels: a backend that compiles per shape corrects it once it learns otherwise."""
    return runtime.info.precision


def exact_baseline(cases: list[dict]) -> int | None:
    """Index of the fastest case that ran FP32 (asked, and not reported otherwise) end to
    end, or None."""
    exact = [i for i, c in enumerate(cases) if c["status"] == "ok" and c["e2e"]
             and c["precision"] == "fp32" and c.get("effective_precision") in (None, "fp32")]
    return min(exact, key=lambda i: cases[i]["e2e"]["seconds"], default=None)
