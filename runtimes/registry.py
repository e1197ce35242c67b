"""Backend registry: one ``BackendEntry`` per backend, the single source of truth about it.

An entry says which model files and model kinds the backend runs, the precisions it runs, how
it builds engines into the engine cache (an ``EngineSpec`` naming an ``engine_cache.Builder``),
the pip distributions it needs, and where its Runtime and Config classes live. Everything that
used to keep its own list of backends (CLI choices and help, compare, bench, build, quantize,
the engine cache, model memory, the model kinds of ``edgesr.model_kinds``) reads the entries.

Built-in entries are below; third-party ones come from the ``edgesr.backends`` entry-point
group (``plugins``), read the first time a backend name is not a built-in one or every backend
is listed. Modules
are imported lazily, so optional dependencies stay optional: only a missing *declared*
dependency is reported as "needs X; pip install X"; any other failure to import says the
backend failed to load, with its first line.
"""

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesr.errors import BackendUnavailableError, EdgesrError, first_line
from edgesr.runtimes.plugins import discover

if TYPE_CHECKING:
    from edgesr.runtimes.base import Runtime

#: What a single-pass upscaler checkpoint can be stored as (see ``edgesr.models.loading``).
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".param")


@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    """How a backend builds engines: ``builder`` ("module" or "module:attribute", an object
    following ``engine_cache.Builder``), the engine's file name in its cache entry
    (``artifact``), the model files it builds from (``sources``), the precisions built from a
    calibration set (``calibrated``) and, for the others, why they take none (``no_calib``).
    ``takes``: the build options of ``BUILD_OPTIONS`` its builder honours; a build asking for
    another is refused (``engine_cache.check_options``), saying why (``refuses``)."""

    builder: str
    artifact: str
    sources: tuple[str, ...]
    calibrated: tuple[str, ...] = ()
    no_calib: str = ""
    takes: tuple[str, ...] = ()
    refuses: str = ""


#: Build options an ``EngineSpec`` may take (``edgesr build`` flags): one fixed tile (a static
#: shape), a batch above 1, a target device.
BUILD_OPTIONS = {"tile": "--tile", "batch": "--batch", "device": "--device"}


@dataclass(frozen=True, kw_only=True)
class BackendEntry:
    """One backend. ``runtime``/``config``: "module:Class" of its Runtime and Config.
    ``requires``: pip distributions it needs; ``modules``: the top-level modules they provide
    (default: the same names), whose absence means "install them"; ``install``: what to pip
    install (default: the distributions). ``kinds``: model kinds it runs (see
    ``edgesr.models.kinds``). ``suffixes``: model files it runs as they are (an upscaler
    checkpoint asked to run on a backend that runs ``.onnx`` is exported first).
    ``artifacts``: its built engines' suffixes: such files run on this backend only.
    ``precisions``: what ``backend:precision`` may ask for (the first is its default when the
    config has no ``precision`` field). ``engine``: how it builds engines, if it does.
    ``native``: "module:function" of ``function(device) -> precisions`` that device runs
    natively, fastest first, ending with fp32 (what ``--precision auto`` tries; see
    ``edgesr.precision``); empty: auto runs the backend's default.
    ``quantizes``: the precisions ``edgesr quantize`` writes model files of for it.
    ``diffusion``: it samples a diffusion model (memory is measured with few steps).
    ``default_rank``: its place among the exact backends (FP32 output within 1e-4 of PyTorch's)
    that run a checkpoint when no backend is named: the installed one with the lowest rank runs
    it (``edgesr.model_kinds``; fastest first, as measured on CPUs); None: never the default.
    (A diffusion kind runs by default on the first backend listed for it.)
    ``baseline``: it runs its kinds' models eagerly in PyTorch at FP32, the reference that
    ``edgesr bench`` times every other backend against (``model_kinds.baseline_backend``).
    ``plugin``: the distribution of a third-party entry (None: built in)."""

    name: str
    runtime: str
    config: str
    requires: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    install: str = ""
    kinds: tuple[str, ...] = ("upscaler",)
    suffixes: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ("fp32",)
    engine: EngineSpec | None = None
    native: str = ""
    quantizes: tuple[str, ...] = ()
    diffusion: bool = False
    default_rank: int | None = None
    baseline: bool = False
    plugin: str | None = None

    @property
    def dependency_modules(self) -> tuple[str, ...]:
        return self.modules or tuple(r.replace("-", "_") for r in self.requires)

    @property
    def installed(self) -> bool:
        """Whether every module it depends on can be found (found, not imported)."""
        import importlib.util

        try:
            return all(importlib.util.find_spec(m) is not None for m in self.dependency_modules)
        except (ImportError, ValueError):  # a finder that refuses a module, a broken package
            return False

    @property
    def install_hint(self) -> str:
        return self.install or " ".join(self.requires)

    @property
    def runs_onnx(self) -> bool:
        return ".onnx" in self.suffixes


_RT = "edgesr.runtimes."
# The samplers' engines: one per graph of a diffusion model (edgesr.diffusion.engines).
_DIFFUSION_IR = EngineSpec(builder="edgesr.diffusion.openvino_sessions", artifact="model.xml",
                           sources=(".onnx",), refuses="a sampler's IR is shape- and "
                           "device-independent; the device is chosen when it runs (--device)",
                           no_calib="INT8 diffusion IRs come from edgesr quantize MODEL -o OUT "
                           "--precision int8 (calibrated on sampler trajectories)")
_DIFFUSION_PLAN = EngineSpec(builder="edgesr.diffusion.tensorrt_sessions", artifact="model.plan",
                             sources=(".onnx",), takes=("tile", "batch", "device"),
                             no_calib="diffusion engines build at fp16 or fp32")
_DIFFUSION_PACKAGE = EngineSpec(builder="edgesr.diffusion.coreml_sessions",
                                artifact="model.mlpackage", sources=(".onnx",),
                                no_calib="diffusion packages convert at fp16 or fp32",
                                refuses="a sampler's package takes latents up to 512 and batch "
                                "1-2 on any Apple device; the compute units are chosen when it "
                                "runs (-O compute_units=...)")
BUILTIN: tuple[BackendEntry, ...] = (
    BackendEntry(name="torch", runtime=_RT + "torch_runtime:TorchRuntime",
                 config=_RT + "torch_runtime:TorchConfig", requires=("torch",),
                 install="'edgesr[export]'",
                 suffixes=CHECKPOINT_SUFFIXES, default_rank=2, baseline=True),
    BackendEntry(name="onnxruntime", runtime=_RT + "onnxruntime_runtime:OnnxRuntime",
                 config=_RT + "onnxruntime_runtime:OnnxRuntimeConfig",
                 requires=("onnxruntime",), suffixes=(".onnx",), quantizes=("fp16", "int8"),
                 default_rank=1),
    BackendEntry(name="openvino", runtime=_RT + "openvino_runtime:OpenVINORuntime",
                 config=_RT + "openvino_runtime:OpenVINOConfig", requires=("openvino",),
                 suffixes=(".onnx", ".xml"), artifacts=(".xml",),
                 precisions=("fp32", "fp16", "bf16"), quantizes=("int8", "bf16"),
                 native=_RT + "openvino_runtime:native_precisions", default_rank=0,
                 engine=EngineSpec(builder=_RT + "openvino_runtime", artifact="model.xml",
                                   sources=(".onnx",), calibrated=("int8",),
                                   takes=("tile", "device"),
                                   refuses="OpenVINO runs one tile per infer request (more "
                                   "requests: -O openvino:num_requests=N)")),
    BackendEntry(name="tensorrt", runtime=_RT + "tensorrt_runtime:TensorRTRuntime",
                 config=_RT + "tensorrt_runtime:TensorRTConfig",
                 requires=("tensorrt", "cuda-python"), modules=("tensorrt", "cuda"),
                 suffixes=(".onnx", ".plan", ".engine"), artifacts=(".plan", ".engine"),
                 precisions=("fp16", "fp32", "int8"),
                 engine=EngineSpec(
                     builder=_RT + "tensorrt_build", artifact="model.plan", sources=(".onnx",),
                     takes=("tile", "batch", "device"),
                     no_calib="TensorRT INT8 is built from a Q/DQ .onnx (edgesr quantize "
                     "--precision int8 --calib ...), which carries its own calibration")),
    BackendEntry(name="coreml", runtime=_RT + "coreml_runtime:CoreMLRuntime",
                 config=_RT + "coreml_runtime:CoreMLConfig", requires=("coremltools",),
                 suffixes=(*CHECKPOINT_SUFFIXES, ".mlpackage"), artifacts=(".mlpackage",),
                 precisions=("fp16", "fp32", "int8"),
                 engine=EngineSpec(builder=_RT + "coreml_convert", artifact="model.mlpackage",
                                   sources=CHECKPOINT_SUFFIXES, takes=("tile",),
                                   no_calib="CoreML int8 quantizes the weights only",
                                   refuses="a CoreML package runs batch 1 on any Apple device; "
                                   "the compute unit is picked when it runs "
                                   "(-O coreml:compute_units=...)")),
    BackendEntry(name="ncnn", runtime=_RT + "ncnn_runtime:NcnnRuntime",
                 config=_RT + "ncnn_runtime:NcnnConfig", requires=("ncnn",),
                 suffixes=(".param",), precisions=("fp32", "fp16")),
    BackendEntry(name="sd-upscaler", runtime=_RT + "sd_upscaler_runtime:SDUpscalerRuntime",
                 config=_RT + "sd_upscaler_runtime:SDUpscalerConfig",
                 requires=("onnxruntime", "diffusers"), install="onnxruntime 'edgesr[diffusion]'",
                 kinds=("sd-x4",), diffusion=True, quantizes=("fp16",)),
    BackendEntry(name="sr3", runtime=_RT + "sr3_runtime:SR3Runtime",
                 config=_RT + "sr3_runtime:SR3Config", requires=("onnxruntime",),
                 kinds=("sr3-denoiser",), suffixes=(".onnx",), diffusion=True,
                 quantizes=("fp16",)),
    # The samplers on OpenVINO: the UNet/VAE (denoiser) IRs are built through the engine cache.
    BackendEntry(name="sd-upscaler-openvino",
                 runtime=_RT + "sd_upscaler_runtime:SDUpscalerOpenVINORuntime",
                 config=_RT + "sd_upscaler_runtime:SDUpscalerOpenVINOConfig",
                 requires=("openvino", "diffusers"), install="openvino 'edgesr[diffusion]'",
                 kinds=("sd-x4",), precisions=("fp32", "fp16", "bf16"), quantizes=("int8",),
                 engine=_DIFFUSION_IR, diffusion=True),
    BackendEntry(name="sr3-openvino", runtime=_RT + "sr3_runtime:SR3OpenVINORuntime",
                 config=_RT + "sr3_runtime:SR3OpenVINOConfig", requires=("openvino",),
                 kinds=("sr3-denoiser",), suffixes=(".onnx",),
                 precisions=("fp32", "fp16", "bf16"), quantizes=("int8",),
                 engine=_DIFFUSION_IR, diffusion=True),
    # ... on TensorRT: engines with a dynamic profile over latent sizes and batch 1-2.
    BackendEntry(name="sd-upscaler-tensorrt",
                 runtime=_RT + "sd_upscaler_runtime:SDUpscalerTensorRTRuntime",
                 config=_RT + "sd_upscaler_runtime:SDUpscalerTensorRTConfig",
                 requires=("tensorrt", "cuda-python", "diffusers"),
                 modules=("tensorrt", "cuda", "diffusers"),
                 install="'edgesr[tensorrt]' 'edgesr[diffusion]'", kinds=("sd-x4",),
                 precisions=("fp16", "fp32"), engine=_DIFFUSION_PLAN, diffusion=True),
    BackendEntry(name="sr3-tensorrt", runtime=_RT + "sr3_runtime:SR3TensorRTRuntime",
                 config=_RT + "sr3_runtime:SR3TensorRTConfig",
                 requires=("tensorrt", "cuda-python"), modules=("tensorrt", "cuda"),
                 install="'edgesr[tensorrt]'", kinds=("sr3-denoiser",), suffixes=(".onnx",),
                 precisions=("fp16", "fp32"), engine=_DIFFUSION_PLAN, diffusion=True),
    # ... and on CoreML: packages written beside the ONNX graphs by edgesr export --coreml, or
    # traced into the engine cache from the PyTorch source the export recorded.
    BackendEntry(name="sd-upscaler-coreml",
                 runtime=_RT + "sd_upscaler_runtime:SDUpscalerCoreMLRuntime",
                 config=_RT + "sd_upscaler_runtime:SDUpscalerCoreMLConfig",
                 requires=("coremltools", "diffusers"),
                 install="coremltools 'edgesr[diffusion]'", kinds=("sd-x4",),
                 precisions=("fp16", "fp32"), engine=_DIFFUSION_PACKAGE, diffusion=True),
    BackendEntry(name="sr3-coreml", runtime=_RT + "sr3_runtime:SR3CoreMLRuntime",
                 config=_RT + "sr3_runtime:SR3CoreMLConfig", requires=("coremltools",),
                 kinds=("sr3-denoiser",), suffixes=(".onnx",), precisions=("fp16", "fp32"),
                 engine=_DIFFUSION_PACKAGE, diffusion=True),
    # ... and eagerly in PyTorch, on the modules each export recorded as its source: the
    # reference the others are benchmarked against; listed last, so never a kind's default.
    BackendEntry(name="sd-upscaler-torch",
                 runtime=_RT + "sd_upscaler_runtime:SDUpscalerTorchRuntime",
                 config=_RT + "sd_upscaler_runtime:SDUpscalerTorchConfig",
                 requires=("torch", "diffusers"), install="'edgesr[export]' 'edgesr[diffusion]'",
                 kinds=("sd-x4",), diffusion=True, baseline=True),
    BackendEntry(name="sr3-torch", runtime=_RT + "sr3_runtime:SR3TorchRuntime",
                 config=_RT + "sr3_runtime:SR3TorchConfig", requires=("torch",),
                 install="'edgesr[export]'", kinds=("sr3-denoiser",), suffixes=(".onnx",),
                 diffusion=True, baseline=True),
)
#: The built-in backends, by name, in the order they are listed (and picked by default).
BACKENDS: dict[str, BackendEntry] = {e.name: e for e in BUILTIN}


class BackendLoadError(EdgesrError):
    """A backend's module failed to import for a reason other than a missing dependency."""


def entries() -> dict[str, BackendEntry]:
    """Every backend that can be named: the built-in ones, then the plugins' (see ``plugins``)."""
    return {**BACKENDS, **discover(BackendEntry, frozenset(BACKENDS))[0]}


def plugin_errors() -> dict[str, str]:
    """Why each plugin that was left out was, by entry-point name."""
    return discover(BackendEntry, frozenset(BACKENDS))[1]


def entry(name: str) -> BackendEntry:
    """The entry of backend ``name``; BackendUnavailableError naming the known ones if none."""
    found = BACKENDS.get(name) or entries().get(name)
    if found is None:
        broken = plugin_errors().get(name)
        if broken:
            raise BackendUnavailableError(broken)
        raise BackendUnavailableError(
            f"unknown backend {name!r}; available: {', '.join(sorted(entries()))}")
    return found


def load(backend: BackendEntry | str, ref: str) -> Any:
    """The object ``ref`` ("module" or "module:attribute") of ``backend``, imported now.

    A missing declared dependency of the backend (``ModuleNotFoundError`` for one of its
    ``dependency_modules`` or a submodule) is BackendUnavailableError "needs X; pip install X";
    any other failure is BackendLoadError, "failed to load: <first line>", chained to the cause.
    """
    backend = entry(backend) if isinstance(backend, str) else backend
    module_name, _, attribute = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if any(missing == m or missing.startswith(m + ".") for m in backend.dependency_modules):
            raise BackendUnavailableError(
                f"backend {backend.name!r} needs {missing.split('.')[0]} ({first_line(exc)}); "
                f"install it with pip install {backend.install_hint}") from None
        raise _load_error(backend, exc) from exc
    except Exception as exc:  # an ImportError or any error of the module's own code
        raise _load_error(backend, exc) from exc
    try:
        return getattr(module, attribute) if attribute else module
    except AttributeError as exc:
        raise _load_error(backend, exc) from exc


def _load_error(backend: BackendEntry, exc: BaseException) -> BackendLoadError:
    source = f" (plugin from {backend.plugin})" if backend.plugin else ""
    return BackendLoadError(f"backend {backend.name!r}{source} failed to load: "
                            f"{type(exc).__name__}: {first_line(exc)}")


def runtime_class(name: str) -> type["Runtime"]:
    return load(name, entry(name).runtime)


def config_class(name: str) -> type:
    return load(name, entry(name).config)


def config_for(name: str, **options: Any):
    """Build the Config dataclass of backend ``name`` from keyword options."""
    config_cls = config_class(name)
    known = {f.name for f in fields(config_cls)}
    unknown = set(options) - known
    if unknown:
        raise EdgesrError(f"backend {name!r} has no option(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(known))}")
    return config_cls(**options)


def create_runtime(name: str, model: str | Path, **options: Any) -> "Runtime":
    """Create (not yet activated) runtime ``name`` for ``model`` with backend options."""
    return runtime_class(name)(model, config_for(name, **options))


def parse_variant(variant: str) -> tuple[str, str | None]:
    """``"openvino:fp16"`` -> ("openvino", "fp16"); ``"torch"`` -> ("torch", None)."""
    backend, sep, precision = variant.partition(":")
    if not backend or (sep and not precision):
        raise EdgesrError(f"{variant!r}: expected BACKEND or BACKEND:PRECISION")
    return backend, precision or None


def precision_options(name: str, precision: str | None) -> dict[str, str]:
    """The Config options that make backend ``name`` run ``precision`` (None: its default):
    its ``precision`` field when it has one; none when it runs that precision only."""
    if precision is None:
        return {}
    backend = entry(name)
    if precision not in backend.precisions:
        raise EdgesrError(f"backend {name!r} has no precision option {precision!r} (it runs "
                          f"{', '.join(backend.precisions)}); quantized model files come from "
                          "edgesr quantize")
    known = {f.name for f in fields(config_class(name))}
    return {"precision": precision} if "precision" in known else {}


def native_precisions(name: str, device: str | None = None) -> tuple[str, ...]:
    """The precisions backend ``name`` runs natively on ``device`` (None: its default device),
    fastest first (its entry's ``native``); () when the entry does not say."""
    backend = entry(name)
    return tuple(load(backend, backend.native)(device)) if backend.native else ()


def device_options(name: str, device: str | None) -> dict[str, Any]:
    """The Config options that run backend ``name`` on ``device`` (``--device``): its ``device``
    field, converted to that field's type (e.g. a CUDA index); {} for None."""
    if device is None:
        return {}
    field = {f.name: f for f in fields(config_class(name))}.get("device")
    if field is None:
        raise EdgesrError(f"backend {name!r} runs on one device; it takes no --device")
    if isinstance(field.default, int):
        try:
            return {"device": int(device)}
        except ValueError:
            raise EdgesrError(f"backend {name!r}: --device is a device index, not "
                              f"{device!r}") from None
    return {"device": device}


class Choices:
    """argparse ``choices`` read from the registry when first needed, so that plugins load
    only when a command parses or lists them (give the argument a ``metavar``: argparse lists
    the choices of one without it as soon as the argument is added)."""

    def __init__(self, values: Callable[[], Iterable[str]]):
        self._values = values

    def _list(self) -> list[str]:
        return list(dict.fromkeys(self._values()))

    def __contains__(self, item: object) -> bool:
        return item in self._list()

    def __iter__(self) -> Iterator[str]:
        return iter(self._list())


def engine_backends() -> list[str]:
    """Backends that build engines into the engine cache (``edgesr build``)."""
    return [name for name, e in entries().items() if e.engine is not None]


def quantize_backends() -> tuple[str, ...]:
    """The built-in backends ``edgesr quantize`` writes model files for."""
    return tuple(name for name, e in BACKENDS.items() if e.quantizes)


def quantize_precisions() -> tuple[str, ...]:
    """The precisions ``edgesr quantize`` writes, over ``quantize_backends``."""
    return tuple(dict.fromkeys(p for e in BACKENDS.values() for p in e.quantizes))
