"""Which precision runs: ``--precision auto|fp32|fp16|bf16|int8`` into a backend's options.

A named precision is the backend's own option (``registry.precision_options``). ``auto`` asks
the backend's entry which precisions the device runs natively, fastest first
(``BackendEntry.native``: BF16 on CPUs with AVX512_BF16/AMX, FP16 on GPUs, ...), and takes the
first that keeps the model within its fidelity gate: PSNR against the backend's own FP32 output
on a few held-out synthetic tiles, at least ``GATE_DB`` (40 dB). The check runs once per model
file (sha256), backend, precision, device and CPU; its result is cached in
``fsutil.cache_dir()/precision-gate``. FP32 needs no gate. What actually ran is the runtime's to
say (``RuntimeInfo.precision``): a device without native support for the asked precision runs
FP32 and says so.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesr import cpu
from edgesr.errors import EdgesrError
from edgesr.fsutil import cache_dir, file_lock, sha256_file, write_text
from edgesr.runtimes import registry

#: What ``--precision`` takes.
CHOICES = ("auto", "fp32", "fp16", "bf16", "int8")
#: The fidelity gate of ``auto``: PSNR (dB) against the FP32 output.
GATE_DB = 40.0
#: The gate's tiles: count and size (a multiple of every size multiple edgesr models have).
GATE_TILES, GATE_SIZE = 3, 48


@dataclass(frozen=True, kw_only=True)
class Choice:
    """The backend options that run the chosen precision, and why it was chosen."""

    options: dict[str, Any]
    precision: str | None
    reason: str = ""
    #: The precision is the model file's, not an option (an INT8 or FP16 file from
    #: ``edgesr quantize``): the runtime refuses a file that runs another.
    from_file: bool = False


def choose(backend: str, model: Path, precision: str | None, options: dict[str, Any],
           *, gate_db: float = GATE_DB) -> Choice:
    """The options that make ``backend`` run ``model`` at ``precision`` (None: what the model
    records, else the backend's default; "auto": see the module docstring)."""
    if precision is not None and precision not in CHOICES:
        raise EdgesrError(f"precision must be one of {', '.join(CHOICES)}, not {precision!r}")
    entry = registry.entry(backend)
    if precision in entry.quantizes and precision not in entry.precisions:
        return Choice(options=options, precision=precision, from_file=True)
    if precision != "auto":
        return Choice(options={**registry.precision_options(backend, precision), **options},
                      precision=precision)
    failed = []
    for candidate in registry.native_precisions(backend, options.get("device")):
        opts = {**registry.precision_options(backend, candidate), **options}
        if candidate == "fp32":
            return Choice(options=opts, precision="fp32",
                          reason="; ".join([*failed, "auto: fp32"]))
        score = gate_psnr(backend, model, candidate, options)
        if score >= gate_db:
            return Choice(options=opts, precision=candidate,
                          reason=f"auto: {candidate} keeps {score:.1f} dB >= {gate_db:g} dB "
                          "vs fp32")
        failed.append(f"auto: {candidate} gave {score:.1f} dB < {gate_db:g} dB vs fp32")
    return Choice(options=options, precision=None, reason="auto: the backend's default")


def gate_psnr(backend: str, model: Path, precision: str, options: dict[str, Any]) -> float:
    """PSNR of ``backend`` at ``precision`` against its FP32 output on the gate tiles; measured
    once per model, backend, precision, device and CPU, then read from the cache."""
    key = json.dumps({"model": sha256_file(model), "backend": backend, "precision": precision,
                      "device": str(options.get("device", "")), "cpu": cpu.detect().key()},
                     sort_keys=True)
    from hashlib import sha256

    path = cache_dir() / "precision-gate" / f"{sha256(key.encode()).hexdigest()[:24]}.json"
    with file_lock(path.with_suffix(".lock")):
        if path.exists():
            try:
                return float(json.loads(path.read_text())["psnr"])
            except (ValueError, KeyError, TypeError):
                pass  # a damaged record is measured again
        score = measure_psnr(backend, model, precision, options)
        write_text(path, json.dumps({"key": json.loads(key), "psnr": score}, indent=1))
    return score


def measure_psnr(backend: str, model: Path, precision: str, options: dict[str, Any]) -> float:
    """PSNR of ``precision`` against ``fp32`` on ``GATE_TILES`` held-out synthetic tiles."""
    from edgesr.calibration import evaluation_images
    from edgesr.fidelity import psnr

    tiles = evaluation_images(count=GATE_TILES, size=GATE_SIZE)
    batch = np.ascontiguousarray(np.stack(tiles).transpose(0, 3, 1, 2), np.float32)
    outputs = []
    for p in ("fp32", precision):
        opts = {**registry.precision_options(backend, p), **options}
        with registry.create_runtime(backend, model, **opts) as runtime:
            outputs.append(np.concatenate([runtime.infer(batch[i:i + 1])
                                           for i in range(len(batch))]))
    reference, candidate = outputs
    return psnr(np.clip(candidate, 0, 1), np.clip(reference, 0, 1))
