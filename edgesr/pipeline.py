"""From a model argument and a backend name to a ready runtime; from image files to image files.

This is the glue the CLI calls: it resolves the default (bundled) model, exports a checkpoint
to ONNX when an ONNX backend is asked for (an SR3 denoiser always: its sr3 backend samples the
ONNX export), and runs single files or whole folders.
"""

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr import fsutil
from edgesr.errors import EdgesrError
from edgesr.imageio import IMAGE_EXTENSIONS, list_images, read_image, write_image
from edgesr.model_memory import ModelMemory
from edgesr.models.zoo import BUNDLED_MODELS, DEFAULT_MODEL, bundled_model_path
from edgesr.runtimes import Runtime, create_runtime
from edgesr.streaming import LARGEST_TILE, auto_tile, upscale_to_png
from edgesr.upscaler import Upscaler

ONNX_BACKENDS = ("onnxruntime", "openvino", "tensorrt")
#: PyTorch checkpoints: checked for a diffusion denoiser before a runtime gets them.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
#: The backend that samples a diffusion denoiser (SR3), from its checkpoint or ONNX export.
DENOISER_BACKEND = "sr3"
#: What an exported Stable Diffusion x4 upscaler folder holds, and the backend that samples it.
SD_GRAPHS = ("unet.onnx", "vae_decoder.onnx")
SD_BACKEND = "sd-upscaler"
#: Built engines, run as they are by their backend.
ENGINE_SUFFIXES = {".xml": "openvino", ".plan": "tensorrt", ".engine": "tensorrt",
                   ".mlpackage": "coreml"}


def resolve_model(model: str | None) -> Path:
    """A model file path: the bundled default, a bundled model by name, or a file."""
    if model is None:
        return bundled_model_path(DEFAULT_MODEL)
    if model in BUNDLED_MODELS:
        return bundled_model_path(model)
    return Path(model)


def default_backend(model_path: Path) -> str:
    """Engines run on their backend, ONNX files on ONNX Runtime, checkpoints on PyTorch, a
    Stable Diffusion x4 export folder (unet.onnx + vae_decoder.onnx) on sd-upscaler (an SR3
    denoiser, checkpoint or ONNX export, on sr3: ``resolve_runtime`` sees to that)."""
    if _sd_export_folder(model_path):
        return SD_BACKEND
    if model_path.suffix in ENGINE_SUFFIXES:
        return ENGINE_SUFFIXES[model_path.suffix]
    if model_path.suffix == ".param" and not _torch_installed():  # converted without torch
        return "onnxruntime"
    return "onnxruntime" if model_path.suffix == ".onnx" else "torch"


def _torch_installed() -> bool:
    """Whether PyTorch can be imported (found, not imported: that takes a second)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except ImportError:  # a finder that refuses it
        return False


def _sd_export_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by exporting a Stable Diffusion x4 upscaler; one
    holding only some of its graphs is an error naming the missing ones."""
    if not path.is_dir() or path.suffix in ENGINE_SUFFIXES:
        return False
    found = [(path / name).is_file() for name in SD_GRAPHS]
    if any(found) and not all(found):
        missing = ", ".join(n for n, ok in zip(SD_GRAPHS, found, strict=True) if not ok)
        raise EdgesrError(f"{path}: a Stable Diffusion x4 export folder needs "
                          f"{' and '.join(SD_GRAPHS)}; {missing} is missing")
    return all(found)


def cache_dir() -> Path:
    """Where derived artifacts (exported ONNX files) are kept: ``fsutil.cache_dir``."""
    return fsutil.cache_dir()


def onnx_for_checkpoint(model_path: Path) -> Path:
    """Export a checkpoint to ONNX once, cached by the checkpoint's sha256 (an SR3 denoiser
    with ``export_sr3``: inputs ``x`` and ``noise_level``, its noise schedule in the metadata);
    an ncnn .param is converted without PyTorch (``export.ncnn_onnx``: the same graph)."""
    if model_path.suffix == ".param":
        from edgesr.export.ncnn_onnx import onnx_for_ncnn

        return onnx_for_ncnn(model_path)
    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import load_model
    from edgesr.models.detect import DENOISERS

    descriptor = load_model(model_path)
    target = cache_dir() / "onnx" / f"{model_path.stem}-{descriptor.source_sha256[:16]}.onnx"
    if not target.is_file():
        if descriptor.architecture in DENOISERS:
            from edgesr.export.diffusion_export import export_sr3

            export_sr3(descriptor, target)
        else:
            export_onnx(descriptor, target)
    return target


def resolve_runtime(model: str | None = None, backend: str | None = None) -> tuple[Path, str]:
    """(model file, backend) that ``open_runtime`` runs: a checkpoint asked to run on an ONNX
    backend becomes its cached ONNX export, and so does an SR3 one, on the sr3 backend."""
    model_path = resolve_model(model)
    if not model_path.exists():  # a .mlpackage is a folder
        raise EdgesrError(f"{model_path}: model file not found")
    denoiser = _denoiser_arch(model_path)
    backend = backend or (DENOISER_BACKEND if denoiser else default_backend(model_path))
    if denoiser or backend == DENOISER_BACKEND:
        return _denoiser_runtime(model_path, backend, denoiser), backend
    engine_backend = ENGINE_SUFFIXES.get(model_path.suffix)
    if _sd_export_folder(model_path) or backend == SD_BACKEND:
        _check_sd_backend(model_path, backend)
        return model_path, backend
    if engine_backend:
        if backend != engine_backend:
            raise EdgesrError(f"{model_path}: a {engine_backend} engine; it runs on "
                              f"--backend {engine_backend}, not {backend!r}")
    elif backend in ONNX_BACKENDS and model_path.suffix != ".onnx":
        model_path = onnx_for_checkpoint(model_path)
    elif backend not in ONNX_BACKENDS and model_path.suffix == ".onnx":
        raise EdgesrError(f"{model_path}: an ONNX model needs an ONNX backend "
                          f"({', '.join(ONNX_BACKENDS)}), not {backend!r}")
    return model_path, backend


def _check_sd_backend(model_path: Path, backend: str) -> None:
    """An SD x4 export folder runs on the sd-upscaler backend, and that backend on nothing else."""
    if backend != SD_BACKEND:
        raise EdgesrError(f"{model_path}: a Stable Diffusion x4 export folder; it runs on "
                          f"--backend {SD_BACKEND}, not {backend!r}")
    if not _sd_export_folder(model_path):
        raise EdgesrError(f"{model_path}: --backend {SD_BACKEND} needs a Stable Diffusion x4 "
                          f"export folder ({' + '.join(SD_GRAPHS)}; see edgesr export)")


def _denoiser_arch(model_path: Path) -> str | None:
    """The architecture of a diffusion denoiser checkpoint, or of an edgesr ONNX export whose
    metadata says role "denoiser"; None for anything else (an unreadable ONNX file included:
    its backend says why)."""
    if model_path.suffix == ".onnx":
        from edgesr.export.specs import read_onnx_metadata

        try:
            meta = read_onnx_metadata(model_path)
        except EdgesrError:
            return None
        return meta.get("arch", "SR3") if meta.get("role") == "denoiser" else None
    if model_path.suffix not in CHECKPOINT_SUFFIXES:
        return None
    from edgesr.models.detect import DENOISERS, detect_architecture
    from edgesr.models.loading import load_state_dict

    arch = detect_architecture(load_state_dict(model_path)).name
    return arch if arch in DENOISERS else None


def _denoiser_runtime(model_path: Path, backend: str, arch: str | None) -> Path:
    """The .onnx file the sr3 backend samples: a denoiser runs there and nowhere else, and that
    backend runs nothing else; a checkpoint becomes its cached export."""
    if backend != DENOISER_BACKEND:
        raise EdgesrError(f"{model_path}: an {arch} diffusion denoiser (x, noise_level -> noise) "
                          f"needs a sampling loop; it runs on --backend {DENOISER_BACKEND}, not "
                          f"{backend!r}")
    if arch is None:
        raise EdgesrError(f"{model_path}: --backend {DENOISER_BACKEND} needs an SR3 denoiser "
                          "(a .pth/.safetensors checkpoint or its edgesr export), not this model")
    return model_path if model_path.suffix == ".onnx" else onnx_for_checkpoint(model_path)


def open_runtime(model: str | None = None, backend: str | None = None, **options) -> Runtime:
    """Create an (inactive) runtime for ``model`` on ``backend`` with backend options."""
    model_path, backend = resolve_runtime(model, backend)
    return create_runtime(backend, model_path, **options)


@dataclass(frozen=True)
class FileResult:
    source: Path
    target: Path | None
    error: str | None = None


def parse_size(text: str) -> float:
    """Bytes from a size such as ``1.5G``, ``512M`` or ``800MB``."""
    units = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    number = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = number[-1:] if number[-1:] in units else ""
    try:
        value = float(number[: len(number) - len(unit)]) * units[unit]
    except ValueError:
        raise EdgesrError(f"not a memory size: {text!r} (examples: 2G, 512M)") from None
    if value <= 0:
        raise EdgesrError(f"memory size must be positive, got {text!r}")
    return value


def upscale_file(upscaler: Upscaler, source: Path, target: Path, *, outscale: float | None = None,
                 bit_depth: int | None = None, stream: bool = False,
                 max_memory: float | None = None,
                 model_memory: ModelMemory | None = None) -> Path:
    """Read, upscale and atomically write one image; return the written path.

    ``max_memory`` (bytes) picks the tile size for this image so that the process's peak memory
    stays within it, from ``model_memory`` (``model_memory.measure_model_memory``; needed unless
    the runtime has a fixed input shape, which leaves no tile to choose) and the process's RSS
    now; ``stream`` writes a PNG row band by row band, so memory stays flat in image size.
    """
    image = read_image(source)
    bit_depth = bit_depth or image.bit_depth
    if stream and (target.suffix.lower() != ".png" or image.has_alpha or outscale):
        raise EdgesrError(f"{source}: --stream writes PNG at the native scale from images "
                          "without alpha; drop --stream for this one")
    if max_memory and upscaler.runtime.info.dynamic:
        if model_memory is None:
            raise EdgesrError("a memory budget needs the model's measured memory (model_memory)")
        upscaler = upscaler.with_tile(_budget_tile(upscaler, image.pixels, max_memory,
                                                   model_memory, stream, outscale, bit_depth))
    if stream:
        upscale_to_png(upscaler, image.pixels, target, bit_depth=bit_depth)
        return target
    pixels = upscaler.upscale(image.pixels, outscale=outscale)
    write_image(target, pixels, bit_depth=bit_depth, like=image)
    return target


def _budget_tile(upscaler: Upscaler, pixels: np.ndarray, max_memory: float, memory: ModelMemory,
                 stream: bool, outscale: float | None, bit_depth: int) -> int:
    """``auto_tile`` for one image, with the process's RSS now as memory already in use."""
    import psutil

    height, width, channels = pixels.shape
    info = upscaler.runtime.info
    planes = upscaler.split_planes(np.zeros((channels, 1, 1), np.float32), channels in (2, 4)).shape
    out_size = upscaler.output_size(height, width, outscale) if outscale else None
    return auto_tile(max_memory, height=height, width=width, scale=info.scale, channels=channels,
                     lanes=planes[0] * planes[1], model_bytes_per_pixel=memory.bytes_per_pixel,
                     model_fixed_bytes=memory.fixed_bytes,
                     reserved=psutil.Process().memory_info().rss, stream=stream,
                     out_size=out_size, bit_depth=bit_depth, multiple=info.size_multiple,
                     batch=upscaler.batch, overlap=upscaler.overlap,
                     largest=memory.largest_tile or LARGEST_TILE)


def plan_outputs(source: Path, output: Path | None, scale_label: str,
                 ext: str | None) -> list[tuple[Path, Path]]:
    """Pairs of (input, output) paths for a file or a folder of images.

    Every output extension is checked here, before any image is upscaled.
    """
    if ext and not ext.startswith("."):
        ext = f".{ext}"
    pairs = _pair_paths(source, output, scale_label, ext)
    for _, target in pairs:
        if target.suffix.lower() not in IMAGE_EXTENSIONS:
            raise EdgesrError(f"{target}: unknown output image format {target.suffix!r}; "
                              f"use one of {', '.join(IMAGE_EXTENSIONS)}")
    return pairs


def _pair_paths(source: Path, output: Path | None, scale_label: str,
                ext: str | None) -> list[tuple[Path, Path]]:
    if source.is_dir():
        if output is None:
            output = source.with_name(f"{source.name}_{scale_label}")
        if output.exists() and not output.is_dir():
            raise EdgesrError(f"{output}: input is a folder, so the output must be a folder")
        images = list_images(source)
        if not images:
            raise EdgesrError(f"{source}: no images found in folder")
        return [(p, output / f"{p.stem}{ext or p.suffix}") for p in images]
    if not source.exists():
        raise EdgesrError(f"{source}: input not found")
    if output is None:
        output = source.with_name(f"{source.stem}_{scale_label}{ext or source.suffix}")
    elif output.is_dir():
        output = output / f"{source.stem}{ext or source.suffix}"
    return [(source, output)]


def upscale_many(upscaler: Upscaler, pairs: list[tuple[Path, Path]],
                 on_result: Callable[[FileResult], None], **kwargs) -> list[FileResult]:
    """Upscale every pair; a failing file is reported and the run carries on."""
    results = []
    for source, target in pairs:
        try:
            result = FileResult(source, upscale_file(upscaler, source, target, **kwargs))
        except EdgesrError as exc:
            result = FileResult(source, None, str(exc))
        on_result(result)
        results.append(result)
    return results
