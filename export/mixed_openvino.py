"""Per-layer mixed precision in one OpenVINO IR, chosen by a measured sensitivity search.

NNCF quantizes the model's convolutions to INT8 once (one calibration; residual sums, concats,
activations and upsampling stay float, so every layer out of INT8 is the float model). Each
convolution is then a layer that can be taken back out of INT8 by bypassing the FakeQuantize
ops on its inputs, so trying a layout costs a compile and a few held-out images, not a
calibration. The search:

1. The layers are cut into ``blocks`` runs in graph order; each block is scored by the PSNR
   (against the FP32 model, on held-out images) that taking it alone out of INT8 gains.
2. The best-scoring blocks are taken out together, as few as reach ``target_psnr`` (a doubling
   search, then bisection: ``quantize_int8.smallest_passing``).

The search is bounded (``SearchBudget``), so it fits minutes on a 2-core CPU for Real-ESRGAN
x4plus (~350 convolutions, 8 blocks of about three RRDB blocks each): NNCF calibrates on the
first ``calib_count`` crops only, and the layouts tried (a compile and the held-out images each)
stop at ``trials`` or ``seconds``. Blocks not scored by then rank after the scored ones, in
graph order; a search cut short takes the passing layout with the fewest layers out of INT8
found so far, else every layer out (the float model, one more evaluation), and says so.

Layers left out of INT8 run at ``rest``: BF16 (the IR records the BF16 inference hint; a CPU
without native BF16 runs them in FP32, which only raises the PSNR) or FP32. ``rest="auto"``
takes BF16 on CPUs with native BF16 (``edgesr.cpu``) when BF16 alone keeps the target, else FP32.
The IR records ``edgesr/precision = mixed`` and the layers kept out of INT8, so the runtime
reports "mixed" as what ran.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgesr import cpu
from edgesr.calibration import CalibrationSet
from edgesr.export.quality import quality_report
from edgesr.export.quantize_common import QuantizeError
from edgesr.export.quantize_int8 import smallest_passing
from edgesr.fsutil import move_files, staging_dir

RESTS = ("auto", "bf16", "fp32")
HINTS = {"bf16": "bf16", "fp32": "f32"}
HINT_KEY = ["runtime_options", "INFERENCE_PRECISION_HINT"]


@dataclass(frozen=True, kw_only=True)
class SearchBudget:
    """Bounds on ``mixed_search``: calibration crops NNCF uses (the first ones), layouts tried
    at most, and wall seconds for trying them (calibration excluded)."""

    calib_count: int = 8
    trials: int = 16
    seconds: float = 300.0


class _BudgetSpent(Exception):
    """The search's budget ran out before a layout could be tried."""


@dataclass(frozen=True, kw_only=True)
class MixedReport:
    """What ``mixed_search`` wrote: the IR, its PSNR against FP32 on the held-out images, the
    precision of the layers out of INT8, the layers (convolutions) kept out and the total, and
    every (layers kept out, PSNR) it tried."""

    path: Path
    psnr: float
    rest: str
    kept: list[str]
    layers: int
    trials: list[tuple[int, float]] = field(default_factory=list)
    #: The search stopped at its ``SearchBudget`` (the layout is the best found by then).
    budget_spent: bool = False


def mixed_search(onnx_path: str | Path, output_path: str | Path, calib: CalibrationSet,
                 images: Sequence[np.ndarray], *, target_psnr: float, rest: str = "auto",
                 blocks: int = 8, budget: SearchBudget = SearchBudget(),
                 log: Callable[[str], None] = lambda _: None) -> MixedReport:
    """Write the mixed-precision IR of an FP32 ONNX model that reaches ``target_psnr`` with
    the most layers in INT8 the ``budget`` finds (see the module docstring); QuantizeError if
    even every layer out of INT8 misses it."""
    import openvino as ov

    from edgesr.export.quantize_openvino import _nncf_int8, _read
    from edgesr.runtimes.openvino_runtime import read_metadata

    if rest not in RESTS:
        raise QuantizeError(f"unknown precision {rest!r} for the layers out of INT8; "
                            f"choose {', '.join(RESTS)}")
    onnx_path = Path(onnx_path)
    fp32 = _read(onnx_path)
    batches = [np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32) for img in images]
    reference = _runner(fp32, "f32")
    ref_outputs = [reference(b) for b in batches]

    def score(model, hint: str) -> float:
        run = _runner(model, hint)
        cached = iter(ref_outputs)
        return quality_report(lambda _: next(cached), run, images, artifact="mixed",
                              precision="mixed").psnr

    if rest == "auto":
        rest = "bf16" if cpu.detect().bf16 and score(fp32, "bf16") >= target_psnr else "fp32"
    hint = HINTS[rest]
    if len(calib) > budget.calib_count:
        calib = CalibrationSet(calib.images[:budget.calib_count], calib.meta)
    # Only convolutions: every layer out of INT8 is the float model.
    int8 = _nncf_int8(fp32, calib, (), conv_only=True)
    layers = [op.get_friendly_name() for op in int8.get_ordered_ops()
              if op.get_type_name() == "Convolution" and _fake_quantizers(op)]
    trials: list[tuple[int, float]] = []
    built: dict[frozenset[str], tuple[list[str], float]] = {}
    deadline = time.monotonic() + budget.seconds

    def build(kept: Sequence[str], name: str, bounded: bool = True) -> tuple[list[str], float]:
        key = frozenset(kept)
        if key not in built:
            if bounded and (len(trials) >= budget.trials or time.monotonic() > deadline):
                raise _BudgetSpent
            psnr = score(without_int8(int8, key, fp32), hint)
            trials.append((len(key), psnr))
            log(f"mixed search {name}: {len(key)} of {len(layers)} layer(s) out of INT8 -> "
                f"{psnr:.2f} dB")
            built[key] = sorted(map(str, key)), psnr
        return built[key]

    kept, psnr = build([], "all INT8", bounded=False)
    spent = False
    if psnr < target_psnr:
        parts = [list(p) for p in np.array_split(layers, min(blocks, len(layers))) if len(p)]
        gains: list[float] = []
        try:
            for i, part in enumerate(parts):
                gains.append(build(part, f"block {i}")[1])
        except _BudgetSpent:
            spent = True
        order = sorted(range(len(parts)), key=lambda i: (-gains[i], i) if i < len(gains)
                       else (np.inf, i))
        ranked = [parts[i] for i in order]
        try:
            kept, psnr = smallest_passing(lambda m: build(sum(ranked[:m], []), f"top {m}"),
                                          len(ranked), target_psnr)
        except _BudgetSpent:
            spent = True
            kept, psnr = min((v for v in built.values() if v[1] >= target_psnr),
                             key=lambda v: len(v[0]), default=(None, 0.0))
            if kept is None:
                kept, psnr = build(layers, "every layer (budget spent)", bounded=False)
                if psnr < target_psnr:
                    raise QuantizeError(f"INT8 cannot reach {target_psnr:g} dB: {psnr:.2f} dB "
                                        "with every layer out of INT8") from None
        if spent:
            log(f"mixed search: budget spent after {len(trials)} layout(s); kept the best "
                "found")
    model = without_int8(int8, set(kept), fp32)
    for key, value in read_metadata(onnx_path, fp32).items():
        model.set_rt_info(value, ["edgesr", key])
    model.set_rt_info(hint, HINT_KEY)
    model.set_rt_info("mixed", ["edgesr", "precision"])
    model.set_rt_info(",".join(kept), ["edgesr", "kept_out_of_int8"])
    output_path = Path(output_path).with_suffix(".xml")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(output_path) as tmp:
        tmp_xml = tmp / output_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        move_files([(tmp_xml.with_suffix(".bin"), output_path.with_suffix(".bin")),
                    (tmp_xml, output_path)])
    return MixedReport(path=output_path, psnr=psnr, rest=rest, kept=kept, layers=len(layers),
                       trials=trials, budget_spent=spent)


def without_int8(model, layers: set[str] | frozenset[str], fp32):
    """A copy of an NNCF INT8 ``model`` with the convolutions named in ``layers`` back in
    float, as in the ``fp32`` model it was quantized from: the FakeQuantize ops on their inputs
    bypassed, and their weights and biases (which NNCF stores as INT8 with a scale, and moves
    by bias correction) taken from ``fp32``. Every layer out of INT8 is the float model."""
    model = model.clone()
    floats = {op.get_friendly_name(): op for op in fp32.get_ordered_ops()}
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if op.get_type_name() != "Convolution" or name not in layers:
            continue
        for port, fq in _fake_quantizers(op):
            op.input(port).replace_source_output(fq.input_value(0))
        op.input(1).replace_source_output(_float_constant(floats[name].input_value(1)))
        for target in op.output(0).get_target_inputs():  # the bias Add after the convolution
            add = target.get_node()
            original = floats.get(add.get_friendly_name())
            if add.get_type_name() == "Add" and original is not None:
                port = 1 - target.get_index()
                add.input(port).replace_source_output(
                    _float_constant(original.input_value(port)))
    model.validate_nodes_and_infer_types()
    return model


def _float_constant(value):
    """A new Constant holding the float data behind ``value`` (an output of another model:
    a Constant, or a Constant through Convert)."""
    from openvino import op

    node = value.get_node()
    while node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Constant":
        raise QuantizeError(f"mixed search: {value.get_node().get_friendly_name()} is not a "
                            "constant in the float model")
    return op.Constant(np.asarray(node.get_data(), np.float32)).output(0)


def _fake_quantizers(op) -> list[tuple[int, object]]:
    """(input port, FakeQuantize op) of each input of ``op`` a FakeQuantize produces."""
    found = []
    for port, value in enumerate(op.input_values()):
        source = value.get_node()
        if source.get_type_name() == "FakeQuantize":
            found.append((port, source))
    return found


def _runner(model, hint: str) -> Callable[[np.ndarray], np.ndarray]:
    """CPU inference of an in-memory ``model`` at INFERENCE_PRECISION_HINT ``hint``."""
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
    return lambda batch: compiled(batch)[0]
