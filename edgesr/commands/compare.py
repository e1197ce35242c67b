"""``edgesr compare``: one input through several backends and precisions, compared pairwise.

Each variant is ``backend[:precision]`` (``torch``, ``onnxruntime``, ``openvino:fp16``,
``tensorrt:int8``, ``coreml:fp16``, or a plugin backend), opened by ``pipeline.open_runtime``
as bench opens its cases: any registered backend, at any precision its registry entry lists.
Every pair gets its max abs diff and PSNR, and a pass/fail at ``--atol`` from Polygraphy's
comparator. A variant that cannot run here is listed with the reason and left out of the pairs.
"""

import argparse
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.errors import BackendUnavailableError, EdgesrError

DEFAULT_VARIANTS = ("torch", "onnxruntime", "openvino:fp32", "openvino:fp16")


@dataclass(frozen=True)
class Pair:
    """How two variants' outputs differ; ``passed`` is Polygraphy's verdict at the atol."""

    a: str
    b: str
    max_abs_diff: float
    psnr: float
    passed: bool


def register(sub) -> None:
    c = sub.add_parser("compare", help="run one input through several backends/precisions and "
                       "compare outputs pairwise (max abs diff, PSNR)")
    c.add_argument("model", nargs="?", help="checkpoint, ncnn .param or bundled model name")
    c.add_argument("-r", "--run", action="append", dest="variants", metavar="BACKEND[:PREC]",
                   help=f"a variant to run (repeatable; default: {' '.join(DEFAULT_VARIANTS)})")
    c.add_argument("-i", "--input", help="an image (default: a synthetic --size tile)")
    c.add_argument("--size", type=int, default=64, help="synthetic input size (default: 64)")
    c.add_argument("--atol", type=float, default=1e-2, help="pass/fail tolerance on [0, 1] "
                   "pixels (default: 0.01)")
    c.set_defaults(func=run)


def run_variants(model_path: Path, variants: list[str], batch: np.ndarray
                 ) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """Run ``batch`` through each variant: (outputs, timing notes, skip reasons). A note names
    the precision a device really ran when it differs from the one asked for."""
    from edgesr.pipeline import open_runtime

    outputs, notes, skipped = {}, {}, {}
    for variant in variants:
        try:
            with open_runtime(str(model_path), variant) as runtime:
                runtime.infer(batch)  # warm-up: first runs pay for lazy init
                start = time.perf_counter()
                outputs[variant] = runtime.infer(batch)
                notes[variant] = f"{(time.perf_counter() - start) * 1e3:9.1f} ms"
                ran = getattr(runtime, "effective_precision", None)
                ran = {"f32": "fp32", "f16": "fp16"}.get(ran, ran)  # OpenVINO's names
                if ran and ran != variant.partition(":")[2]:
                    notes[variant] += f"  (the device ran {ran})"
        except BackendUnavailableError as exc:
            skipped[variant] = str(exc)
    return outputs, notes, skipped


def compare_outputs(outputs: dict[str, np.ndarray], atol: float) -> list[Pair]:
    """Every pair of outputs: max abs diff and PSNR, and Polygraphy's pass/fail at ``atol``."""
    from polygraphy.comparator import Comparator, RunResults
    from polygraphy.comparator.compare import SimpleCompareFunc
    from polygraphy.comparator.struct import IterationResult
    from polygraphy.logger import G_LOGGER

    names = list(outputs)
    results = RunResults()
    for name in names:
        results.append((name, [IterationResult({"output": outputs[name]}, runner_name=name)]))
    pairs = list(itertools.combinations(range(len(names)), 2))
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        verdicts = Comparator.compare_accuracy(
            results, compare_func=SimpleCompareFunc(atol=atol, rtol=0), comparisons=pairs)[0]
    out = []
    for (a, b), iterations in verdicts.items():
        diff = outputs[a].astype(np.float64) - outputs[b]
        mse = float(np.mean(diff ** 2))
        out.append(Pair(a, b, float(np.abs(diff).max()),
                        float("inf") if mse == 0 else 10 * np.log10(1 / mse),
                        bool(iterations[0]["output"])))
    return out


def run(args: argparse.Namespace) -> int:
    from edgesr.imageio import read_image
    from edgesr.pipeline import resolve_model

    model_path = resolve_model(args.model)
    if args.input:
        pixels = read_image(args.input).pixels[..., :3]
    else:
        pixels = np.random.default_rng(0).random((args.size, args.size, 3), np.float32)
    batch = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)
    variants = args.variants or list(DEFAULT_VARIANTS)
    outputs, notes, skipped = run_variants(model_path, variants, batch)
    print(f"input {batch.shape[3]}x{batch.shape[2]}; {model_path.name}")
    for variant in variants:
        print(f"  {variant:<16} {notes.get(variant) or 'skipped: ' + skipped[variant]}")
    if len(outputs) < 2:
        raise EdgesrError("fewer than two variants ran; nothing to compare")
    print(f"{'pair':<36} {'max abs diff':>12} {'PSNR dB':>8}  atol {args.atol:g}")
    pairs = compare_outputs(outputs, args.atol)
    for p in pairs:
        print(f"{p.a + ' vs ' + p.b:<36} {p.max_abs_diff:12.3g} {p.psnr:8.1f}  "
              f"{'pass' if p.passed else 'FAIL'}")
    return 0 if all(p.passed for p in pairs) else 1
