"""What this CPU can run natively: the one place that reads the CPU's model name and flags.

Linux reads ``/proc/cpuinfo``; macOS asks ``sysctl``; elsewhere only the model name from
``platform`` is known and every flag is absent (so nothing is assumed). Tests and benchmarks
inject another CPU with ``simulate`` (e.g. one without BF16) to check the fallbacks.
"""

import os
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: The flags edgesr's choices depend on, in the order they are reported.
REPORTED = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
            "amx_bf16", "amx_int8", "amx_fp16", "asimd", "asimdhp", "i8mm", "bf16")


@dataclass(frozen=True, kw_only=True)
class CpuInfo:
    """A CPU: ``model`` name, ``flags`` (lower-case, as /proc/cpuinfo spells them), ``cores``
    (logical CPUs this process may use)."""

    model: str
    flags: frozenset[str] = field(default_factory=frozenset)
    cores: int = 1

    @property
    def bf16(self) -> bool:
        """Native BF16 arithmetic (AVX512_BF16 or AMX-BF16 on x86, BF16 on Arm)."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16", "bf16"})

    @property
    def fp16(self) -> bool:
        """Native FP16 arithmetic (AVX512_FP16 or AMX-FP16 on x86, FP16 vector ops on Arm)."""
        return bool(self.flags & {"avx512_fp16", "amx_fp16", "asimdhp"})

    @property
    def vnni(self) -> bool:
        """INT8 dot products (VNNI, AMX-INT8 or Arm I8MM): where INT8 pays most."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8", "i8mm"})

    def reported_flags(self) -> list[str]:
        """The flags of ``REPORTED`` this CPU has, for reports and benchmark records."""
        return [f for f in REPORTED if f in self.flags]

    def key(self) -> str:
        """A short identity for caches of per-CPU decisions: model name and reported flags."""
        return f"{self.model}|{','.join(self.reported_flags())}"

    def describe(self) -> str:
        return f"{self.model} ({self.cores} cores; {' '.join(self.reported_flags()) or 'no flags'})"


_simulated: list[CpuInfo] = []


def detect() -> CpuInfo:
    """This CPU (or the one ``simulate`` injects)."""
    return _simulated[-1] if _simulated else _detect()


@contextmanager
def simulate(cpu: CpuInfo) -> Iterator[CpuInfo]:
    """Make ``detect`` return ``cpu`` inside the block (tests, what-if reports)."""
    _simulated.append(cpu)
    try:
        yield cpu
    finally:
        _simulated.remove(cpu)


@lru_cache(maxsize=1)
def _detect() -> CpuInfo:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model, flags = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    elif platform.system() == "Darwin":
        model, flags = _sysctl()
    else:
        model, flags = "", frozenset()
    return CpuInfo(model=model or platform.processor() or platform.machine(), flags=flags,
                   cores=cores or 1)


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in a /proc/cpuinfo text (x86 or Arm)."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.lower().split())
    return model, flags


def _sysctl() -> tuple[str, frozenset[str]]:
    """(model, flags) from macOS sysctl; Apple silicon has BF16/FP16/I8MM per hw.optional."""
    def read(name: str) -> str:
        try:
            return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    flags = set(read("machdep.cpu.features").lower().split())
    flags |= set(read("machdep.cpu.leaf7_features").lower().replace(".", "_").split())
    for arm_flag, name in (("bf16", "hw.optional.arm.FEAT_BF16"),
                           ("asimdhp", "hw.optional.arm.FEAT_FP16"),
                           ("i8mm", "hw.optional.arm.FEAT_I8MM")):
        if read(name) == "1":
            flags.add(arm_flag)
    return read("machdep.cpu.brand_string"), frozenset(flags)
