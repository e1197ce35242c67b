"""Model kinds: what a model argument is, which backend runs it by default, and what file that
backend gets (after spandrel's registry of architectures, in an explicit order).

Kinds are tried in ``KINDS`` order; the first whose ``detect`` recognises the model wins, and
the last, the single-pass upscaler, takes anything. Each backend declares the kinds it runs in
its registry entry (``BackendEntry.kinds``), so ``resolve`` is a lookup over the two registries:
a model of a kind its backend does not run is one clear line naming the backend that does.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgesr.errors import EdgesrError
from edgesr.runtimes.registry import CHECKPOINT_SUFFIXES, entries, entry

#: What an exported Stable Diffusion x4 upscaler folder holds (see ``edgesr export``).
SD_GRAPHS = ("unet.onnx", "vae_decoder.onnx")
UPSCALER, SD_X4, DENOISER = "upscaler", "sd-x4", "sr3-denoiser"


@dataclass(frozen=True, kw_only=True)
class ModelKind:
    """``detect(path)``: how to call the model (e.g. "a Stable Diffusion x4 export folder")
    when it is of this kind, else None. ``wanted``: what a backend that runs only this kind asks
    for. ``default_backend(path, device)``: the backend that runs it on ``device`` (None: the
    CPU) when none is named.
    ``prepare(path, backend)``: the file ``backend`` runs (a checkpoint's ONNX export, say)."""

    name: str
    detect: Callable[[Path], str | None]
    wanted: str
    default_backend: Callable[[Path, str | None], str]
    prepare: Callable[[Path, str], Path]


def backends_for(kind: str) -> list[str]:
    """The backends that run models of ``kind``, in registry order."""
    return [name for name, e in entries().items() if kind in e.kinds]


def baseline_backend(kind: str) -> str | None:
    """The backend declared the PyTorch eager FP32 reference of ``kind`` (what ``edgesr bench``
    compares with), or None."""
    return next((n for n, e in entries().items() if e.baseline and kind in e.kinds), None)


def engine_backend(suffix: str) -> str | None:
    """The backend whose built engines have ``suffix`` (only it runs them), or None."""
    return next((n for n, e in entries().items() if suffix in e.artifacts), None)


def exported_onnx(model_path: Path) -> Path:
    """A checkpoint's ONNX export, made once and cached by the checkpoint's sha256 (an SR3
    denoiser with ``export_sr3``: inputs ``x`` and ``noise_level``, its noise schedule in the
    metadata); an ncnn .param is converted without PyTorch (``export.ncnn_onnx``, same graph)."""
    if model_path.suffix == ".param":
        from edgesr.export.ncnn_onnx import onnx_for_ncnn

        return onnx_for_ncnn(model_path)
    from edgesr.export.onnx_export import export_onnx
    from edgesr.fsutil import cache_dir
    from edgesr.models import load_model
    from edgesr.models.detect import purpose_of

    descriptor = load_model(model_path)
    target = cache_dir() / "onnx" / f"{model_path.stem}-{descriptor.source_sha256[:16]}.onnx"
    if not target.is_file():
        if purpose_of(descriptor.architecture) == "denoiser":
            from edgesr.export.diffusion_export import export_sr3

            export_sr3(descriptor, target)
        else:
            export_onnx(descriptor, target)
    return target


def _sd_folder(path: Path) -> str | None:
    """A folder written by exporting a Stable Diffusion x4 upscaler; one holding only some of
    its graphs is an error naming the missing ones."""
    if not path.is_dir() or engine_backend(path.suffix):
        return None
    found = [(path / name).is_file() for name in SD_GRAPHS]
    if any(found) and not all(found):
        missing = ", ".join(n for n, ok in zip(SD_GRAPHS, found, strict=True) if not ok)
        raise EdgesrError(f"{path}: a Stable Diffusion x4 export folder needs "
                          f"{' and '.join(SD_GRAPHS)}; {missing} is missing")
    return "a Stable Diffusion x4 export folder" if all(found) else None


def denoiser_arch(model_path: Path) -> str | None:
    """The architecture of a diffusion denoiser checkpoint (an ``ArchSpec`` whose purpose is
    "denoiser"), or of an edgesr ONNX export whose metadata says role "denoiser"; None for
    anything else (an unreadable ONNX file included: its backend says why)."""
    if model_path.suffix == ".onnx":
        from edgesr.export.specs import read_onnx_metadata

        try:
            meta = read_onnx_metadata(model_path)
        except EdgesrError:
            return None
        return meta.get("arch", "SR3") if meta.get("role") == "denoiser" else None
    if model_path.suffix not in CHECKPOINT_SUFFIXES or model_path.suffix == ".param":
        return None
    from edgesr.models.detect import detect_architecture
    from edgesr.models.loading import load_state_dict

    spec = detect_architecture(load_state_dict(model_path))
    return spec.name if spec.purpose == "denoiser" else None


def _denoiser(path: Path) -> str | None:
    arch = denoiser_arch(path)
    return arch and (f"an {arch} diffusion denoiser (x, noise_level -> noise) needs a sampling "
                     "loop")


def checkpoint_backends(path: Path) -> list[str]:
    """The installed backends that run upscaler checkpoint ``path`` exactly, by their declared
    ``default_rank`` (one that runs ONNX gets the checkpoint's cached ONNX export: an ncnn
    .param converts without PyTorch, any other checkpoint needs PyTorch to export)."""
    exportable = path.suffix == ".param" or entry("torch").installed
    ranked = sorted((e.default_rank, n) for n, e in entries().items()
                    if e.default_rank is not None and UPSCALER in e.kinds and e.installed
                    and (path.suffix in e.suffixes or (e.runs_onnx and exportable)))
    return [name for _, name in ranked]


def _upscaler_backend(path: Path, device: str | None = None) -> str:
    """A checkpoint (or ncnn .param) run on the CPU runs on the first of
    ``checkpoint_backends``: the fastest exact one installed (the ranks were measured on
    CPUs; on another ``device`` it runs on torch, the reference, as named); any other file on
    the first backend that runs files like it (torch for anything)."""
    if path.suffix in CHECKPOINT_SUFFIXES:
        on_cpu = device is None or device.lower() == "cpu"
        return next(iter(checkpoint_backends(path)), "torch") if on_cpu else "torch"
    return next((n for n, e in entries().items() if UPSCALER in e.kinds
                 and path.suffix in e.suffixes), "torch")


def _upscaler_file(path: Path, backend: str) -> Path:
    """An engine runs on its backend only; a checkpoint asked to run on a backend that runs
    ONNX becomes its cached ONNX export, on one that runs ncnn files its cached ncnn export; an
    ONNX model needs an ONNX backend."""
    owner = engine_backend(path.suffix)
    if owner:
        if backend != owner:
            raise EdgesrError(f"{path}: a {owner} engine; it runs on --backend {owner}, "
                              f"not {backend!r}")
        return path
    backend_entry = entry(backend)
    if path.suffix in backend_entry.suffixes:
        return path
    if backend_entry.runs_onnx:
        return exported_onnx(path)
    if ".param" in backend_entry.suffixes and path.suffix in CHECKPOINT_SUFFIXES:
        from edgesr.export.ncnn_export import exported_ncnn

        return exported_ncnn(path)
    if path.suffix == ".onnx":
        onnx_backends = [n for n, e in entries().items() if UPSCALER in e.kinds and e.runs_onnx]
        raise EdgesrError(f"{path}: an ONNX model needs an ONNX backend "
                          f"({', '.join(onnx_backends)}), not {backend!r}")
    return path


KINDS: tuple[ModelKind, ...] = (
    ModelKind(name=SD_X4, detect=_sd_folder,
              wanted=f"a Stable Diffusion x4 export folder ({' + '.join(SD_GRAPHS)}; see "
              "edgesr export)",
              default_backend=lambda path, device: backends_for(SD_X4)[0],
              prepare=lambda path, backend: path),
    ModelKind(name=DENOISER, detect=_denoiser,
              wanted="an SR3 denoiser (a .pth/.safetensors checkpoint or its edgesr export)",
              default_backend=lambda path, device: backends_for(DENOISER)[0],
              prepare=lambda path, backend: path if path.suffix == ".onnx"
              else exported_onnx(path)),
    ModelKind(name=UPSCALER, detect=lambda path: "a single-pass upscaler",
              wanted="a single-pass upscaler (a checkpoint, ncnn .param, .onnx or engine)",
              default_backend=_upscaler_backend, prepare=_upscaler_file),
)
KIND = {kind.name: kind for kind in KINDS}


def detect_kind(path: Path) -> tuple[ModelKind, str]:
    """The first kind that recognises ``path``, and how it calls the model."""
    for kind in KINDS:
        described = kind.detect(path)
        if described:
            return kind, described
    raise AssertionError("the last kind takes any model")


def resolve(path: Path, backend: str | None = None,
            device: str | None = None) -> tuple[Path, str]:
    """(file, backend) that runs model ``path`` on ``backend`` (None: the kind's default on
    ``device``).

    A backend that runs single-pass upscalers given a model of another kind is told which
    backend runs it; a backend that runs one other kind only says what model it needs.
    """
    kind, described = detect_kind(path)
    backend = backend or kind.default_backend(path, device)
    runs = entry(backend).kinds
    if kind.name not in runs:
        if UPSCALER in runs:
            raise EdgesrError(f"{path}: {described}; it runs on --backend "
                              f"{' or '.join(backends_for(kind.name))}, not {backend!r}")
        wanted = KIND[runs[0]].wanted if runs and runs[0] in KIND else f"a {'/'.join(runs)}"
        raise EdgesrError(f"{path}: --backend {backend} needs {wanted}, not this model")
    return kind.prepare(path, backend), backend
