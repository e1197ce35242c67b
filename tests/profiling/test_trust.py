"""Which benchmark figures are unreliable and why; the precision that ran; the exact baseline."""

from collections import namedtuple
from dataclasses import replace

import pytest
from stub_runtimes import NearestRuntime

from edgesr.profiling import trust
from edgesr.runtimes.base import RuntimeInfo

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")
Own = namedtuple("Own", "user system children_user children_system")


def _row(**values) -> dict:
    return {"runs": 10, "spread": 0.01, "gflops": None, **values}


def test_row_reasons():
    assert trust.row_reasons(_row(), peak=100.0, precision="fp32") == []
    assert "only 2 sample(s)" in trust.row_reasons(_row(runs=2), 100.0, "fp32")[0]
    assert "samples spread 40%" in trust.row_reasons(_row(spread=0.4), 100.0, "fp32")[0]
    over = trust.row_reasons(_row(gflops=150.0), 100.0, "fp32")
    assert len(over) == 1 and "exceeds the measured FP32 GEMM peak 100.0" in over[0]
    assert trust.row_reasons(_row(gflops=150.0), 100.0, "int8") == []  # int8 kernels may pass it
    assert trust.row_reasons(_row(gflops=90.0), 100.0, None) == []


def test_cpu_watch_counts_other_processes_only(monkeypatch):
    """Busy time of the machine minus this process's own, over the wall time of all CPUs."""
    machine = iter([Times(10, 0, 5, 100, 0, 0, 0, 0, 0, 0), Times(14, 0, 7, 102, 0, 0, 0, 0, 0, 0)])
    own = iter([Own(1.0, 0.0, 0.0, 0.0), Own(2.0, 0.0, 0.0, 0.0)])
    clock = iter([0.0, 2.0])

    class Process:
        def cpu_times(self):
            return next(own)

    monkeypatch.setattr(trust.psutil, "cpu_times", lambda: next(machine))
    monkeypatch.setattr(trust.psutil, "cpu_count", lambda: 2)
    monkeypatch.setattr(trust.psutil, "Process", Process)
    monkeypatch.setattr(trust.time, "perf_counter", lambda: next(clock))
    with trust.CpuWatch() as watch:
        pass
    # busy 6 s, own 1 s: others used 5 s of 2 s x 2 CPUs
    assert watch.other_share == pytest.approx(1.25)
    assert "other processes used 125% of the CPUs" in watch.reason()
    assert set(watch.as_dict()) == {"loadavg_before", "loadavg_after", "other_cpu_share"}


def test_busy_machine(monkeypatch):
    monkeypatch.setattr(trust, "usable_cores", lambda: 4)
    assert trust.busy_machine([1.0, 1.0, 1.0]) is None
    assert "load average 3.00 on 4 usable cores" in trust.busy_machine([3.0, 1.0, 1.0])
    assert trust.busy_machine(None) is None


def test_effective_precision_is_what_the_runtime_info_reports():
    class Ran(NearestRuntime):
        def activate_impl(self) -> RuntimeInfo:
            return replace(super().activate_impl(), precision="bf16")

    with Ran() as runtime:
        assert trust.effective_precision(runtime) == "bf16"
    with NearestRuntime() as runtime:  # a backend that does not report one
        assert trust.effective_precision(runtime) is None


def test_exact_baseline_is_the_fastest_fp32_case():
    def case(precision, seconds, ran=None, status="ok"):
        return {"status": status, "precision": precision, "effective_precision": ran,
                "e2e": {"seconds": seconds}}

    cases = [case("fp32", 2.0), case("int8", 0.1), case("fp32", 1.0), case("fp32", 0.5, "bf16"),
             case("fp32", 0.2, status="unavailable")]
    assert trust.exact_baseline(cases) == 2
    assert trust.exact_baseline([case("int8", 0.1)]) is None
