"""OpenVINO sessions for the samplers: the UNet and VAE decoder (any multi-input graph) compiled
by OpenVINO with dynamic shapes, on CPU, GPU or NPU, at an INFERENCE_PRECISION_HINT.

An ``.onnx`` graph is converted to IR once through the engine cache (``build_engine`` with the
sampler backend's ``EngineSpec``, whose builder is this module: FP16-compressed weights when it
runs at fp16, else FP32); an ``.xml`` IR beside the ``.onnx`` (what ``edgesr quantize`` writes
for OpenVINO, e.g. INT8-compressed weights) is compiled instead, as it is. The edgesr metadata
is read from the ``.onnx`` file the sampler names. Each session reports the precision the
device really ran (``precision``), read off the compiled model: a CPU without native bf16/fp16
runs f32 whatever the hint.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr.diffusion.sessions import SessionFactory, onnx_metadata
from edgesr.errors import BackendUnavailableError, EdgesrError, first_line

#: edgesr precision name -> OpenVINO INFERENCE_PRECISION_HINT value (f32 is explicit: OpenVINO
#: would pick bf16 by itself on AMX CPUs).
PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
#: IR weight formats the engine cache builds (an INT8 IR comes from ``edgesr quantize``).
IR_PRECISIONS = ("fp32", "fp16")
#: OpenVINO's precision names -> edgesr's.
RAN = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}


@dataclass(frozen=True, kw_only=True)
class OpenVINOSessionOptions:
    """``device``: an OpenVINO device ("CPU", "GPU", "GPU.1", "NPU"); ``precision``: the
    INFERENCE_PRECISION_HINT (fp32/fp16/bf16); ``threads``: INFERENCE_NUM_THREADS (0: OpenVINO's
    default)."""

    device: str = "CPU"
    precision: str = "fp32"
    threads: int = 0

    @property
    def where(self) -> str:
        """The device it runs on, as the upscale line names it."""
        return self.device

    def check_engine(self, backend: str) -> None:
        if self.precision not in PRECISION_HINTS:
            raise EdgesrError(f"{backend}: precision must be one of "
                              f"{', '.join(PRECISION_HINTS)}, not {self.precision!r}")
        if self.threads < 0:
            raise EdgesrError(f"{backend}: need threads >= 0")

    def sessions(self, backend: str) -> SessionFactory:
        return openvino_sessions(backend, device=self.device, precision=self.precision,
                                 threads=self.threads)

    def build_options(self):
        """What its sessions build into the engine cache (``edgesr build`` builds the same):
        an IR with FP16 weights at the fp16 hint, else FP32 weights."""
        from edgesr.runtimes.engine_cache import BuildOptions

        return BuildOptions(precision="fp16" if self.precision == "fp16" else "fp32")


class OpenVINOSession:
    """A Session on an OpenVINO compiled model; ``precision`` is what the device runs: int8
    for an IR with INT8 weights or quantized activations (``edgesr quantize``), else the
    compiled model's inference precision."""

    def __init__(self, compiled, metadata: dict[str, str], int8: bool = False) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self._metadata = metadata
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.precision = "int8" if int8 else RAN.get(hint, hint)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(inputs)
        return [np.array(result[output]) for output in self.compiled.outputs]

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)


def openvino_sessions(backend: str, *, device: str = "CPU", precision: str = "fp32",
                      threads: int = 0) -> SessionFactory:
    """A factory of OpenVINO sessions on ``device`` at ``precision`` (see the module
    docstring)."""
    import openvino as ov

    core = ov.Core()
    if device.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
        raise BackendUnavailableError(f"{backend}: OpenVINO device {device!r} not found; "
                                      f"available: {', '.join(core.available_devices)}")
    properties: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY",
                                     "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision]}
    if threads:
        properties["INFERENCE_NUM_THREADS"] = threads

    def open_session(path: Path) -> OpenVINOSession:
        metadata = onnx_metadata(path)
        beside = path.with_suffix(".xml")
        graph = beside if beside.is_file() else _ir(backend, path, precision)
        try:
            compiled = compile_ir(core, graph, device, properties)
        except RuntimeError as exc:
            raise EdgesrError(f"{backend}: OpenVINO cannot compile {graph} for {device}: "
                              f"{first_line(exc)}") from None
        return OpenVINOSession(compiled, metadata, int8=ir_is_int8(graph))

    return open_session


def ir_is_int8(ir: Path) -> bool:
    """Whether IR ``ir`` holds INT8 (or narrower) weights or FakeQuantize layers: its ``.xml``
    is read, never its weights."""
    text = ir.read_text(encoding="utf-8", errors="replace")
    return ('type="FakeQuantize"' in text
            or any(f'element_type="{t}"' in text for t in ("i8", "u8", "i4", "u4")))


def compile_ir(core, ir: Path, device: str, properties: dict[str, object]):
    """The IR at ``ir`` compiled for ``device``, from its path (OpenVINO maps the ``.bin``).
    Peak memory, measured: the real SD x4 UNet at the BF16 hint 1.26 copies of its weights;
    one oversized MatMul at f32 2.23 (its mapped pages and the CPU plugin's repacked weights;
    ``read_model`` + ``compile_model`` measured the same there)."""
    return core.compile_model(str(ir), device, properties)


def _ir(backend: str, path: Path, precision: str) -> Path:
    """The IR of graph ``path`` from the engine cache (``build_options``)."""
    from edgesr.runtimes.engine_cache import build_engine

    options = OpenVINOSessionOptions(precision=precision).build_options()
    return build_engine(backend, path, options).artifact


# This module is the OpenVINO sampler backends' ``engine_cache.Builder``.
def identity(options) -> tuple[str, str, str]:
    """(version, device, profile) of an IR build: IRs are device- and shape-independent."""
    import openvino as ov

    return ov.get_version(), "any", "dynamic"


def build(source: Path, target: Path, options) -> None:
    """Convert graph ``source`` (``.onnx``, external data included) to an IR at ``target``."""
    import openvino as ov

    if options.precision not in IR_PRECISIONS:
        raise EdgesrError(f"OpenVINO diffusion IRs are built at {' or '.join(IR_PRECISIONS)}, "
                          f"not {options.precision} (INT8: edgesr quantize)")
    try:
        model = ov.Core().read_model(str(source))
    except RuntimeError as exc:
        raise EdgesrError(f"{source}: OpenVINO cannot read it: {first_line(exc)}") from None
    model.set_rt_info(options.precision, ["edgesr", "ir_precision"])
    ov.save_model(model, str(target), compress_to_fp16=options.precision == "fp16")
