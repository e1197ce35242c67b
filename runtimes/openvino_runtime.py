"""OpenVINO backend: IR builder (FP32, FP16, and NNCF INT8 from a calibration set) and a runtime
that overlaps tiles on async infer requests.

The runtime compiles an IR (``.xml`` + ``.bin``); given an edgesr ONNX model, it builds the IR
first through the engine cache, as the TensorRT and CoreML backends build theirs (FP16-compressed
weights when it runs at fp16, else FP32). It compiles the model for each static tile shape it is
fed, once (faster on CPU than dynamic shapes; the last few shapes stay compiled), or for the one
``tile`` it is given, and deals the images of a batch round-robin to a pool of async infer
requests so tiles run concurrently. The precision is planned before compiling
(``plan_precision``): what is asked, else what the IR records; a CPU without native BF16/FP16
(``edgesr.cpu``) runs FP32, and the runtime says so. (Not ``AsyncInferQueue``: its Python
callbacks deadlock OpenVINO 2026.4 when the compiled model is freed while an executor thread
still waits for the GIL.)
"""

import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import openvino as ov

from edgesr import cpu
from edgesr.errors import (
    BackendUnavailableError,
    CheckpointError,
    EdgesrError,
    InferenceError,
    first_line,
)
from edgesr.runtimes.base import Runtime, RuntimeInfo

#: edgesr precision name -> OpenVINO INFERENCE_PRECISION_HINT value.
PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
#: OpenVINO element type name -> edgesr precision name.
PRECISION_NAMES = {v: k for k, v in PRECISION_HINTS.items()}
#: Compiled static shapes kept per runtime (tiles of one image have one to four shapes).
SHAPES_KEPT = 4
#: Compiled models kept in OpenVINO's model cache (``compiled_cache_dir``), newest first.
COMPILED_KEPT = 8
#: Where ``edgesr quantize`` records the inference precision an IR is meant to run at.
RECORDED_HINT = ["runtime_options", "INFERENCE_PRECISION_HINT"]
PERFORMANCE_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
#: IR weight formats ``build_ir`` writes (INT8 IRs come from NNCF, see ``build``).
IR_PRECISIONS = ("fp32", "fp16")
METADATA_FIELDS = ("arch", "scale", "in_channels", "out_channels", "size_multiple",
                   "source_sha256")


class OpenVINOError(EdgesrError):
    """OpenVINO could not read, convert or compile a model."""


def version() -> str:
    """The OpenVINO runtime version string (part of every engine cache key)."""
    return ov.get_version()


def describe() -> str:
    """OpenVINO version and devices, for ``edgesr backends``."""
    core = ov.Core()
    names = [f"{d} ({core.get_property(d, 'FULL_DEVICE_NAME')})" for d in core.available_devices]
    return f"OpenVINO {version().split('-')[0]}; devices: {', '.join(names)}"


@dataclass(frozen=True, kw_only=True)
class OpenVINOConfig:
    """How to compile and run the model.

    ``device``: an OpenVINO device ("CPU", "GPU", "GPU.1", "NPU"). ``precision``: the
    INFERENCE_PRECISION_HINT (fp32/fp16/bf16; None: the hint the IR records, else fp32; a device
    without native support runs fp32, which ``RuntimeInfo.precision`` reports).
    ``performance``: latency or throughput hint. ``num_requests``: async infer requests (0: the
    device's optimal number). ``tile``: reshape to this static (height, width) input; None takes
    any height and width, compiled per shape when ``static`` (the default) or once with dynamic
    shapes. ``threads``: INFERENCE_NUM_THREADS (0: OpenVINO's default). ``compile_cache``:
    OpenVINO's model cache (CACHE_DIR in ``compiled_cache_dir()``): a fresh process loads the
    compiled model for a shape it compiled before instead of compiling it again.
    """

    device: str = "CPU"
    precision: str | None = None
    performance: str = "latency"
    num_requests: int = 0
    tile: tuple[int, int] | None = None
    static: bool = True
    threads: int = 0
    compile_cache: bool = True

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in PRECISION_HINTS:
            raise EdgesrError(f"openvino: precision must be one of {', '.join(PRECISION_HINTS)}, "
                              f"not {self.precision!r}")
        if self.performance not in PERFORMANCE_HINTS:
            raise EdgesrError(f"openvino: performance must be latency or throughput, "
                              f"not {self.performance!r}")
        if self.tile is not None and (len(self.tile) != 2 or min(self.tile) < 1):
            raise EdgesrError(f"openvino: tile must be (height, width), got {self.tile!r}")

    def compile_properties(self, hint: str) -> dict[str, object]:
        """The properties passed to ``Core.compile_model`` at precision ``hint`` (an
        INFERENCE_PRECISION_HINT value, see ``plan_precision``)."""
        props: dict[str, object] = {
            "PERFORMANCE_HINT": PERFORMANCE_HINTS[self.performance],
            "INFERENCE_PRECISION_HINT": hint,
        }
        if self.threads:
            props["INFERENCE_NUM_THREADS"] = self.threads
        if self.compile_cache:
            props["CACHE_DIR"] = str(compiled_cache_dir())
        return props


def compiled_cache_dir() -> Path:
    """OpenVINO's model cache (``CACHE_DIR``): compiled models, one blob per model, shape,
    device and properties, named by OpenVINO's hash of all of them (the weights included), so
    a changed model or OpenVINO version never loads a stale one; a truncated blob (a process
    killed while writing it) is compiled again. The ``COMPILED_KEPT`` newest are kept."""
    from edgesr.fsutil import cache_dir

    return cache_dir() / "openvino-compiled"


def prune_compiled(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest blobs in ``folder`` (a process that is reading one
    that goes keeps its open file; one that looks for it later compiles again)."""
    blobs = []
    for blob in folder.glob("*.blob"):
        try:
            blobs.append((blob.stat().st_mtime, blob))
        except OSError:  # another process pruned it
            continue
    for _, blob in sorted(blobs, reverse=True)[keep:]:
        blob.unlink(missing_ok=True)


def native_precisions(device: str | None) -> tuple[str, ...]:
    """What ``device`` runs natively, fastest first: BF16 on CPUs with AVX512_BF16/AMX, FP32 on
    other CPUs, FP16 on GPUs and NPUs (the registry's ``native`` hook for ``--precision auto``)."""
    if (device or "CPU").split(".")[0].upper() != "CPU":
        return ("fp16", "fp32")
    return ("bf16", "fp32") if cpu.detect().bf16 else ("fp32",)


def plan_precision(config: OpenVINOConfig, model: ov.Model) -> tuple[str, str, str]:
    """(INFERENCE_PRECISION_HINT, edgesr precision name, note) for ``model``: the asked
    precision, else the hint the IR records (``edgesr quantize``), else FP16 for an IR with FP16
    weights (``edgesr build -p fp16``: run as built, and said), else FP32 (explicit: OpenVINO
    would pick BF16 by itself on AMX CPUs). A CPU without native BF16/FP16 runs FP32; the note
    says so. INT8 (FakeQuantize) IRs are named int8, their other layers at the hint."""
    note = ""
    if config.precision is not None:
        asked = config.precision
    elif model.has_rt_info(RECORDED_HINT):
        asked = PRECISION_NAMES.get(model.get_rt_info(RECORDED_HINT).astype(str), "fp32")
        note = f"{asked} as the IR records"
    elif (model.has_rt_info(["edgesr", "ir_precision"])
          and model.get_rt_info(["edgesr", "ir_precision"]).astype(str) == "fp16"):
        asked, note = "fp16", "the IR's weights are fp16: run at fp16 as built"
    else:
        asked = "fp32"
    device = config.device.split(".")[0].upper()
    supported = {"bf16": cpu.detect().bf16, "fp16": cpu.detect().fp16}
    if device == "CPU" and not supported.get(asked, True):
        note = (f"{asked} asked{' (' + note + ')' if note else ''}; this CPU has no native "
                f"{asked.upper()}: fell back to fp32")
        asked = "fp32"
    name = asked
    if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
        name, note = "int8", f"INT8 IR; other layers at {asked}"
    if model.has_rt_info(["edgesr", "precision"]):
        name = model.get_rt_info(["edgesr", "precision"]).astype(str)
        note = f"{name} IR; other layers at {asked}"
    return PRECISION_HINTS[asked], name, note


def read_metadata(model_path: Path, model: ov.Model) -> dict[str, str]:
    """edgesr metadata (``scale``, ``in_channels``, ...) of an ONNX file or an IR's rt_info.

    IRs written by other tools (NNCF INT8, ``edgesr quantize``) carry none; for them scale,
    channels and size multiple are read off OpenVINO's shape inference (``probe_metadata``).
    """
    if model_path.suffix == ".onnx":
        from edgesr.export.specs import read_onnx_metadata

        meta = {k: str(v) for k, v in read_onnx_metadata(model_path).items()
                if k in METADATA_FIELDS}
    else:
        meta = {k: model.get_rt_info(["edgesr", k]).astype(str)
                for k in METADATA_FIELDS if model.has_rt_info(["edgesr", k])}
    if not {"scale", "in_channels", "out_channels"} <= meta.keys():
        meta = probe_metadata(model_path, model)
    return meta


def probe_metadata(model_path: Path, model: ov.Model) -> dict[str, str]:
    """Scale, channels and size multiple of a model without edgesr metadata, by reshaping
    copies of it to probe sizes (64 + m must pass for size multiple m)."""
    in_channels = model.input(0).get_partial_shape()[1]
    if in_channels.is_dynamic:
        raise OpenVINOError(f"{model_path}: input channels are dynamic and no edgesr metadata "
                            "says how many; export the model with `edgesr export`")
    channels = in_channels.get_length()
    for multiple in (1, 2, 4, 8):
        probe = model.clone()
        try:
            probe.reshape({probe.input(0): ov.PartialShape([1, channels, 64 + multiple, 64])})
        except RuntimeError:
            continue
        out = probe.output(0).get_partial_shape()
        if out.is_static and out[2].get_length() % (64 + multiple) == 0:
            scale = out[2].get_length() // (64 + multiple)
            return {"scale": str(scale), "in_channels": str(channels),
                    "out_channels": str(out[1].get_length()), "size_multiple": str(multiple)}
    raise OpenVINOError(f"{model_path}: cannot tell its scale (no edgesr metadata, and shape "
                        "inference fails); export the model with `edgesr export`")


# This module is the openvino entry's ``engine_cache.Builder`` (identity and build).
def identity(options) -> tuple[str, str, str]:
    """(version, device, profile) of an IR build. A dynamic IR is device-independent; one with
    a fixed tile (``--tile``) is reshaped to it and compiled for ``options.device`` (default
    CPU), whose compiled model is kept beside it (``openvino_blob``)."""
    if not options.profile.is_fixed:
        if options.device is not None:
            raise OpenVINOError("openvino: --device is the device the compiled model is made "
                                "for, which needs a fixed --tile (a dynamic IR runs anywhere)")
        return version(), "any", "dynamic"
    from edgesr.runtimes.openvino_blob import device_name

    device = _device(ov.Core(), options.device or "CPU")
    return version(), f"{device}-{device_name(ov.Core(), device)}", options.profile.label


def _device(core: ov.Core, device: str) -> str:
    """``device`` when OpenVINO finds it here, else BackendUnavailableError naming those it
    finds."""
    if device.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
        raise BackendUnavailableError(f"openvino: device {device!r} not found; available: "
                                      f"{', '.join(core.available_devices)}")
    return device


def build(source: Path, target: Path, options) -> None:
    """Engine-cache builder: ``build_ir`` at ``options.precision``; int8 quantizes with NNCF on
    the calibration set ``options.calib`` (``edgesr.export.quantize_openvino``). A fixed tile
    reshapes the IR to it and keeps the model compiled for ``options.device`` beside it."""
    if options.precision != "int8":
        build_ir(source, target, precision=options.precision)
    else:
        from edgesr.calibration import CalibrationSet
        from edgesr.export.quantize_openvino import quantize_openvino

        quantize_openvino(source, target, CalibrationSet.load(options.calib),
                          keep=options.keep, conv_only=options.conv_only)
    if options.profile.is_fixed:
        _fix_shape(target, options.profile.opt_hw)
        from edgesr.runtimes.openvino_blob import export

        core = ov.Core()
        # compiled here, not taken from OpenVINO's model cache: a cache-loaded model exports a
        # blob that import_model cannot read (OpenVINO 2025)
        config = OpenVINOConfig(device=_device(core, options.device or "CPU"), compile_cache=False)
        hint = plan_precision(config, core.read_model(str(target)))[0]
        export(core, target, config.device, hint, config.compile_properties(hint))


def _fix_shape(xml: Path, tile: tuple[int, int]) -> None:
    """Reshape IR ``xml`` (in a build folder) to a static batch-1 ``tile`` input, in place."""
    model = ov.Core().read_model(str(xml))
    multiple = int(read_metadata(xml, model).get("size_multiple", 1))
    if tile[0] % multiple or tile[1] % multiple:
        raise OpenVINOError(f"openvino: --tile {tile[0]} must be a multiple of {multiple}, the "
                            "model's size multiple")
    channels = model.input(0).get_partial_shape()[1]
    model.reshape({model.input(0): ov.PartialShape([1, channels, *tile])})
    tmp = xml.with_name(f".{xml.stem}.{uuid.uuid4().hex[:8]}.tmp.xml")
    try:  # not over the files ``model`` may still map
        ov.save_model(model, str(tmp), compress_to_fp16=False)  # the weights stay as built
        del model
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp, xml)
    finally:
        for leftover in (tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)


def build_ir(onnx_path: str | Path, xml_path: str | Path, *, precision: str = "fp32") -> Path:
    """Convert an edgesr ONNX model to IR: FP32 weights, or FP16-compressed weights.

    The edgesr metadata travels in the IR's rt_info. Both files are written under temporary
    names and renamed into place, the ``.bin`` first, so a present ``.xml`` means a whole IR.
    """
    if precision not in IR_PRECISIONS:
        raise OpenVINOError(f"openvino IR precision must be one of {', '.join(IR_PRECISIONS)}, "
                            f"not {precision!r} (INT8 IRs are quantized by NNCF from a calibration "
                            "set: edgesr build -p int8 --calib)")
    onnx_path, xml_path = Path(onnx_path), Path(xml_path)
    try:
        model = ov.Core().read_model(str(onnx_path))
    except RuntimeError as exc:
        raise OpenVINOError(f"{onnx_path}: OpenVINO cannot read it: {first_line(exc)}") from None
    for key, value in read_metadata(onnx_path, model).items():
        model.set_rt_info(value, ["edgesr", key])
    model.set_rt_info(precision, ["edgesr", "ir_precision"])
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_xml = xml_path.with_name(f".{xml_path.stem}.{uuid.uuid4().hex[:8]}.tmp.xml")
    try:
        ov.save_model(model, str(tmp_xml), compress_to_fp16=precision == "fp16")
        os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp_xml, xml_path)
    finally:
        for leftover in (tmp_xml, tmp_xml.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)
    return xml_path


class OpenVINORuntime(Runtime):
    """Runs an edgesr ONNX model or IR with OpenVINO; see ``OpenVINOConfig``."""

    name = "openvino"

    def __init__(self, model: str | Path, config: OpenVINOConfig | None = None):
        super().__init__()
        self.model_path = Path(model)
        self.config = config or OpenVINOConfig()
        self.compiled: ov.CompiledModel | None = None
        self.requests: list[ov.InferRequest] = []
        self._core: ov.Core | None = None
        self._model: ov.Model | None = None
        self._props: dict[str, object] = {}
        self._shapes: OrderedDict[tuple[int, int], tuple] = OrderedDict()
        self._scale = 1
        self._ir: Path | None = None
        #: How the current compiled model was made: "imported" (the compiled model kept beside
        #: the IR by ``edgesr build --tile``, see ``openvino_blob``), "cached" (OpenVINO's model
        #: cache, ``compiled_cache_dir``) or "compiled" (here).
        self.compiled_by: str | None = None

    def ir_path(self) -> Path:
        """The IR to compile: the model itself, or an ONNX model's IR from the engine cache."""
        if not self.model_path.exists():
            raise CheckpointError(f"{self.model_path}: model file not found")
        if self.model_path.suffix != ".onnx":
            return self.model_path
        from edgesr.runtimes.engine_cache import BuildOptions, build_engine

        weights = "fp16" if self.config.precision == "fp16" else "fp32"
        return build_engine(self.name, self.model_path, BuildOptions(precision=weights)).artifact

    def activate_impl(self) -> RuntimeInfo:
        cfg = self.config
        core = self._core = ov.Core()
        family = cfg.device.split(".")[0]  # CPU is always there: no probe of other plugins
        if family != "CPU" and family not in {d.split(".")[0] for d in core.available_devices}:
            raise BackendUnavailableError(
                f"openvino: device {cfg.device!r} not found; available: "
                f"{', '.join(core.available_devices)}")
        path = self.ir_path()
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise OpenVINOError(f"{path}: OpenVINO cannot read it: {first_line(exc)}") from None
        meta = read_metadata(path, model)
        in_channels = int(meta["in_channels"])
        hint, precision, note = plan_precision(cfg, model)
        self._model, self._props, self._ir = model, cfg.compile_properties(hint), path
        hw = model.input(0).get_partial_shape()[2:]
        if cfg.tile is None and hw.is_static:  # an IR built for one tile (build --tile)
            cfg = self.config = replace(cfg, tile=(hw[0].get_length(), hw[1].get_length()))
        self._scale = int(meta["scale"])
        info = RuntimeInfo(scale=self._scale, in_channels=in_channels,
                           out_channels=int(meta["out_channels"]), fixed_hw=cfg.tile,
                           size_multiple=int(meta.get("size_multiple", 1)), precision=precision,
                           precision_note=note, device=cfg.device)
        self._info = info  # _compile corrects its precision if OpenVINO runs another
        if cfg.tile is not None or not cfg.static:
            self._compile(cfg.tile)  # compile now: one shape (or dynamic) serves every call
            jobs = len(self.requests)
        else:  # a compile per tile shape, on first use
            jobs = cfg.num_requests or _optimal_requests(core, cfg.device, self._props)
        return replace(self._info, preferred_batch=max(1, jobs))

    def _compile(self, shape: tuple[int, int] | None) -> None:
        """Compile the model for input (height, width) ``shape`` (None: dynamic), once per
        shape (the last ``SHAPES_KEPT`` are kept), and make it the current one."""
        if shape in self._shapes:
            self._shapes.move_to_end(shape)
            self.compiled, self.requests = self._shapes[shape]
            return
        assert self._core is not None and self._model is not None
        cfg, model = self.config, self._model
        if shape is not None:
            model = model.clone()
            channels = model.input(0).get_partial_shape()[1]
            channels = channels.get_length() if channels.is_static else -1
            model.reshape({model.input(0): ov.PartialShape([1, channels, *shape])})
        compiled = self._import(shape)
        if compiled is None:
            try:
                compiled = self._core.compile_model(model, cfg.device, self._props)
            except RuntimeError as exc:
                raise OpenVINOError(f"openvino: compiling for {cfg.device} failed: "
                                    f"{first_line(exc)}") from None
            self.compiled_by = "cached" if _loaded_from_cache(compiled) else "compiled"
            if cfg.compile_cache and self.compiled_by == "compiled":
                prune_compiled(compiled_cache_dir(), COMPILED_KEPT)
        ran = PRECISION_NAMES.get(compiled.get_property("INFERENCE_PRECISION_HINT").to_string())
        asked = PRECISION_NAMES.get(str(self._props["INFERENCE_PRECISION_HINT"]))
        if self._info is not None and ran != asked and self._info.precision == asked:
            self._info = replace(self._info, precision=ran, precision_note=(
                f"{asked} asked; OpenVINO runs {ran} on {cfg.device}"))
        jobs = cfg.num_requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        requests = [compiled.create_infer_request() for _ in range(jobs)]
        self._shapes[shape] = compiled, requests
        while len(self._shapes) > SHAPES_KEPT:
            for request in self._shapes.popitem(last=False)[1][1]:
                request.wait()
        self.compiled, self.requests = compiled, requests

    def _import(self, shape: tuple[int, int] | None) -> "ov.CompiledModel | None":
        """The compiled model kept beside the IR for ``shape``, when it matches this run (else
        None, and the reason joins the precision note: another device or OpenVINO version)."""
        from edgesr.runtimes.openvino_blob import load

        if shape is None or self._ir is None or self._ir.suffix != ".xml":
            return None
        assert self._core is not None and self._model is not None and self._info is not None
        channels = int(self._info.in_channels)
        compiled, why = load(self._core, self._ir, self.config.device,
                             str(self._props["INFERENCE_PRECISION_HINT"]),
                             [1, channels, *shape], self._props)
        if compiled is not None:
            self.compiled_by = "imported"
        elif why and why not in self._info.precision_note:
            note = "; ".join(n for n in (self._info.precision_note, why) if n)
            self._info = replace(self._info, precision_note=note)
        return compiled

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        # One caller at a time deals tiles to the request pool: two threads sharing a request
        # get "Infer Request is busy" or each other's tiles. (Created here, on first use.)
        with self.__dict__.setdefault("_infer_lock", threading.Lock()):
            return self._infer_pooled(batch)

    def _infer_pooled(self, batch: np.ndarray) -> np.ndarray:
        assert self._info is not None
        n, _, h, w = batch.shape
        if self._info.fixed_hw is not None and (h, w) != self._info.fixed_hw:
            raise InferenceError(f"openvino: the model was reshaped to tile {self._info.fixed_hw}, "
                                 f"got a {h}x{w} batch")
        if self._info.fixed_hw is None and self.config.static:
            self._compile((h, w))
        out = np.empty((n, self._info.out_channels, h * self._scale, w * self._scale), np.float32)
        jobs = len(self.requests)
        for i in range(n):  # request i % jobs takes tile i once it has handed back tile i - jobs
            request = self.requests[i % jobs]
            if i >= jobs:
                _collect(request, out, i - jobs)
            request.start_async({0: batch[i:i + 1]}, share_inputs=True)  # no input copy
        for i in range(max(0, n - jobs), n):
            _collect(self.requests[i % jobs], out, i)
        return out

    def deactivate_impl(self) -> None:
        for _, requests in self._shapes.values():
            for request in requests:
                request.wait()
        self._shapes.clear()
        self.requests = []
        self.compiled = None
        self._model = None


def _optimal_requests(core: ov.Core, device: str, props: dict[str, object]) -> int:
    """The device's optimal number of infer requests under ``props`` (1 under a latency hint)."""
    if props["PERFORMANCE_HINT"] != "THROUGHPUT":
        return 1
    return int(core.get_property(device, "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
                                 {"PERFORMANCE_HINT": "THROUGHPUT"}))


def _loaded_from_cache(compiled: ov.CompiledModel) -> bool:
    try:
        return bool(compiled.get_property("LOADED_FROM_CACHE"))
    except RuntimeError:  # a device plugin without the property
        return False


def _collect(request: ov.InferRequest, out: np.ndarray, index: int) -> None:
    """Wait for ``request`` and copy its output tile into ``out[index]``."""
    request.wait()
    out[index] = request.get_output_tensor(0).data[0]
