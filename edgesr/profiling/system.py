"""What a benchmark ran on: CPU model and SIMD flags, memory, library versions, thread counts."""

import importlib.metadata
import os
import platform
import sys

import psutil

#: CPU flags that decide which kernels a backend can use (x86 names from /proc/cpuinfo).
INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd",
    "asimdhp", "asimddp", "sve", "bf16", "i8mm",
)

#: Distributions whose versions go into the report (missing ones are left out), beside those
#: every registered backend requires (``BackendEntry.requires``).
LIBRARIES = ("edgesr", "torch", "numpy", "onnx", "ncnn", "pillow", "matplotlib", "psutil")


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as a dict (empty off Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            block = fh.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    pairs = (line.split(":", 1) for line in block.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def cpu_flags() -> frozenset[str]:
    """Every capability flag the CPU reports (x86 ``flags``, Arm ``Features``; empty off
    Linux): the one place that decides which kernels (VNNI, BF16, AMX, fp16) this CPU has."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def cpu_info() -> dict:
    """CPU model, the interesting SIMD flags it has, and core counts."""
    info = _cpuinfo()
    flags = cpu_flags()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    return {
        "model": info.get("model name") or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "flags": [f for f in INTERESTING_FLAGS if f in flags],
        "logical_cores": os.cpu_count() or 0,
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": affinity,
    }


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape performance."""
    from edgesr.runtimes.registry import entries

    versions = {}
    backends = (dist for backend in entries().values() for dist in backend.requires)
    for name in dict.fromkeys((*LIBRARIES, *backends)):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def thread_settings() -> dict:
    """Thread counts torch uses (None without torch) and the environment variables that steer
    other runtimes."""
    env = {key: os.environ[key] for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS") if key in os.environ}
    try:
        import torch
    except ImportError:
        return {"torch_intra_op": None, "torch_inter_op": None, "env": env}
    return {"torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(), "env": env}


def gpu_info() -> list[dict]:
    """CUDA devices torch sees: name and memory (empty on CPU-only machines or without torch)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append({"name": props.name, "memory_mb": props.total_memory / (1 << 20)})
    return devices


def system_info() -> dict:
    """Everything about the machine and software a benchmark report records."""
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "cpu": cpu_info(),
        "memory_mb": psutil.virtual_memory().total / (1 << 20),
        "gpus": gpu_info(),
        "libraries": library_versions(),
        "threads": thread_settings(),
    }
