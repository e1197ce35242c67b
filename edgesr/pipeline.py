"""From a model argument and a backend name to a ready runtime; from image files to image files.

This is the glue the CLI calls: it resolves the default (bundled) model, turns a model and a
``backend[:precision]`` into a runtime (the model kinds of ``model_kinds`` say which backend and
which file: a checkpoint on an ONNX backend becomes its ONNX export, and so does an SR3 denoiser,
whose sr3 backend samples the export), and runs single files or whole folders.
"""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesr import model_kinds
from edgesr.errors import EdgesrError
from edgesr.exif import carry_exif, read_exif
from edgesr.fsutil import clean_stale_temps
from edgesr.imageio import (
    IMAGE_EXTENSIONS,
    Image,
    list_images,
    read_image,
    read_size,
    write_image,
)
from edgesr.limits import DEFAULT_LIMITS, PixelLimits, memory_needed
from edgesr.model_memory import ModelMemory
from edgesr.models.zoo import BUNDLED_MODELS, DEFAULT_MODEL, bundled_model_path
from edgesr.runtimes import Runtime, create_runtime
from edgesr.runtimes.registry import device_options, parse_variant
from edgesr.streaming import LARGEST_TILE, auto_tile, upscale_to_png, upscale_to_tiff
from edgesr.upscaler import Upscaler


def resolve_model(model: str | None) -> Path:
    """A model file path: the bundled default, a bundled model by name, or a file."""
    if model is None:
        return bundled_model_path(DEFAULT_MODEL)
    if model in BUNDLED_MODELS:
        return bundled_model_path(model)
    return Path(model)


def resolve_runtime(model: str | None = None, backend: str | None = None,
                    device: str | None = None) -> tuple[Path, str]:
    """(model file, backend) that ``open_runtime`` runs: the model's kind (``model_kinds``)
    picks the default backend (for ``device``) and says what file the backend gets (a
    checkpoint asked to run on an ONNX backend becomes its cached ONNX export, and so does an
    SR3 one, on the sr3 backend)."""
    model_path = resolve_model(model)
    if not model_path.exists():  # a .mlpackage is a folder
        raise EdgesrError(f"{model_path}: model file not found")
    return model_kinds.resolve(model_path, backend, device)


def open_runtime(model: str | None = None, backend: str | None = None, *,
                 precision: str | None = None, device: str | None = None,
                 **options) -> Runtime:
    """Create an (inactive) runtime for ``model`` on ``backend`` with backend options;
    ``backend`` may name a precision, ``backend:precision`` (e.g. ``openvino:fp16``), which
    becomes the backend's precision option (``registry.precision_options``), as ``precision``
    does (auto|fp32|fp16|bf16|int8, see ``edgesr.precision``; why auto chose what it did is the
    runtime's ``precision_reason``); ``device`` is the backend's device option. compare, bench
    and the benchmarks open every variant through here."""
    from edgesr import precision as precisions

    if backend is not None:
        backend, named = parse_variant(backend)
        if named is not None and precision not in (None, named):
            raise EdgesrError(f"{backend}:{named} and precision {precision!r} disagree")
        precision = precision or named
    model_path, backend = resolve_runtime(model, backend, device)
    options = {**device_options(backend, device), **options}
    choice = precisions.choose(backend, model_path, precision, options)
    runtime = create_runtime(backend, model_path, **choice.options)
    runtime.precision_reason = choice.reason
    runtime.options = dict(choice.options)
    if choice.from_file:
        runtime.required_precision = choice.precision
    return runtime


@dataclass(frozen=True)
class FileResult:
    """One file of a run: where it went (or the error), its sizes (width, height), whether it
    was streamed and how long it took."""

    source: Path
    target: Path | None
    error: str | None = None
    size_in: tuple[int, int] | None = None
    size_out: tuple[int, int] | None = None
    streamed: bool = False
    seconds: float | None = None


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


#: Output formats written row band by row band (``streaming``), by extension.
STREAMED_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}

#: Called with (source, why it is not streamed, about the bytes it needs) for each file upscaled
#: in memory when streaming was left to the pipeline.
WholeImageNote = Callable[[Path, str, float], None]


def stream_blocker(upscaler: Upscaler, target: Path, height: int, width: int,
                   outscale: float | None = None) -> str | None:
    """Why the upscale of a ``height`` x ``width`` image into ``target`` cannot be streamed
    (written row band by row band), or None if it can."""
    fmt = STREAMED_FORMATS.get(target.suffix.lower())
    if fmt is None:
        name = target.suffix.lstrip(".").upper() or "this"
        return f"{name} output is encoded from the whole image (PNG and TIFF stream)"
    if upscaler.output_size(height, width, outscale) != upscaler.output_size(height, width):
        return "--outscale resizes the whole image"
    return None


def upscale_file(upscaler: Upscaler, source: Path, target: Path, *, outscale: float | None = None,
                 bit_depth: int | None = None, stream: bool | None = None,
                 quality: int | None = None, max_memory: float | None = None,
                 model_memory: ModelMemory | None = None, limits: PixelLimits = DEFAULT_LIMITS,
                 on_whole_image: WholeImageNote | None = None) -> Path:
    """Read, upscale and atomically write one image; return the written path.

    ``stream``: None (the default) streams whenever the output can be written row band by row
    band (PNG or TIFF at the model's scale, ``stream_blocker``), so memory stays flat in image
    size, and otherwise upscales in memory, telling ``on_whole_image`` why and how much memory
    it takes; True streams or raises an EdgesrError saying why it cannot; False never streams.
    Both ways give the same pixels.

    ``limits``: the most input and output pixels, checked from the file's header before it is
    decoded (PixelLimitError). ``quality``: JPEG, WebP, AVIF and HEIC quality (1-100).

    ``max_memory`` (bytes) picks the tile size for this image so that the process's peak memory
    stays within it, from ``model_memory`` (``model_memory.measure_model_memory``; needed unless
    the runtime has a fixed input shape, which leaves no tile to choose) and the process's RSS
    now. The source's EXIF (orientation reset, since pixels are upright) goes into JPEG, PNG and
    WebP outputs (``edgesr.exif``).
    """
    return _upscale_file(upscaler, source, target, outscale=outscale, bit_depth=bit_depth,
                         stream=stream, quality=quality, max_memory=max_memory,
                         model_memory=model_memory, limits=limits,
                         on_whole_image=on_whole_image).target


def _upscale_file(upscaler: Upscaler, source: Path, target: Path, *,
                  outscale: float | None = None, bit_depth: int | None = None,
                  stream: bool | None = None, quality: int | None = None,
                  max_memory: float | None = None, model_memory: ModelMemory | None = None,
                  limits: PixelLimits = DEFAULT_LIMITS,
                  on_whole_image: WholeImageNote | None = None) -> FileResult:
    """``upscale_file``, returning its ``FileResult``."""
    started = time.perf_counter()
    height, width, channels = read_size(source)
    scale = upscaler.runtime.info.scale
    out_size = upscaler.output_size(height, width, outscale)
    blocker = stream_blocker(upscaler, target, height, width, outscale)
    if stream and blocker:
        raise EdgesrError(f"{source}: --stream writes PNG or TIFF at the model's scale, and "
                          f"{blocker}; drop --stream for this one")
    streamed = blocker is None and stream is not False
    limits.check(source, height, width, out_size, channels=channels, scale=scale,
                 stream=streamed)
    if blocker and stream is None and on_whole_image is not None:
        on_whole_image(source, blocker, memory_needed(height, width, out_size,
                                                      channels=channels, scale=scale,
                                                      stream=False))
    image = read_image(source)
    bit_depth = bit_depth or image.bit_depth
    if max_memory and upscaler.runtime.info.dynamic:
        if model_memory is None:
            raise EdgesrError("a memory budget needs the model's measured memory (model_memory)")
        upscaler = upscaler.with_tile(_budget_tile(upscaler, image.pixels, max_memory,
                                                   model_memory, streamed, outscale, bit_depth))
    if streamed:
        _stream_to(upscaler, image, source, target, bit_depth)
    else:
        pixels = upscaler.upscale(image.pixels, outscale=outscale)
        write_image(target, pixels, bit_depth=bit_depth, like=image,
                    **({} if quality is None else {"quality": quality}))
        carry_exif(source, target)
    return FileResult(source, target, size_in=(width, height), size_out=out_size[::-1],
                      streamed=streamed, seconds=time.perf_counter() - started)


def _stream_to(upscaler: Upscaler, image: Image, source: Path, target: Path,
               bit_depth: int) -> None:
    """Stream ``image``'s upscale into ``target`` (PNG or TIFF) with ``write_image``'s
    metadata: the ICC profile, the DPI scaled with the pixels and (PNG) the source's EXIF."""
    scale = upscaler.runtime.info.scale
    dpi = image.dpi and (image.dpi[0] * scale, image.dpi[1] * scale)
    if STREAMED_FORMATS[target.suffix.lower()] == "PNG":
        upscale_to_png(upscaler, image.pixels, target, bit_depth=bit_depth,
                       icc_profile=image.icc_profile, dpi=dpi, exif=read_exif(source))
    else:
        upscale_to_tiff(upscaler, image.pixels, target, bit_depth=bit_depth,
                        icc_profile=image.icc_profile, dpi=dpi)


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
                 ext: str | None, suffix: str | None = None) -> list[tuple[Path, Path]]:
    """Pairs of (input, output) paths for a file or a folder of images.

    Outputs edgesr names are ``{stem}_{scale_label}{ext}`` beside a single input and
    ``{stem}{ext}`` in an output folder (``{folder}_{scale_label}`` by default); ``suffix``
    (Real-ESRGAN's ``--suffix``) makes every name it picks ``{stem}_{suffix}{ext}``
    (``{stem}{ext}`` if empty). ``ext`` defaults to the input's.

    Checked here, before any image is upscaled: every output extension; ``ext`` is an
    extension only (no folder in it); no output is an input (an original is never replaced);
    no two inputs share an output (``a.png`` and ``a.jpg`` with ``ext`` ``.png``).
    """
    if ext is not None:
        ext = ext if ext.startswith(".") else f".{ext}"
        if not re.fullmatch(r"\.[A-Za-z0-9]+", ext):
            raise EdgesrError(f"--ext {ext!r}: an extension such as .png, not a path")
    if suffix is not None and not re.fullmatch(r"[^/\\\0]*", suffix):
        raise EdgesrError(f"--suffix {suffix!r}: a name suffix such as 'out', not a path")
    pairs = _pair_paths(source, output, scale_label, ext, suffix)
    inputs = {_identity(s): s for s, _ in pairs}
    targets: dict = {}
    for source_path, target in pairs:
        if target.suffix.lower() not in IMAGE_EXTENSIONS:
            raise EdgesrError(f"{target}: unknown output image format {target.suffix!r}; "
                              f"use one of {', '.join(IMAGE_EXTENSIONS)}")
        key = _identity(target)
        if key in inputs:
            raise EdgesrError(f"{target}: would overwrite the input {inputs[key]}; choose "
                              "another output (-o) or --ext")
        if key in targets:
            raise EdgesrError(f"{targets[key]} and {source_path} would both be written to "
                              f"{target}; choose another --ext or move one of them")
        targets[key] = source_path
    return pairs


def _identity(path: Path) -> tuple:
    """What tells two paths apart: the file's device and inode when it exists (hard and
    symbolic links), else its resolved path."""
    try:
        stat = path.stat()
        return stat.st_dev, stat.st_ino
    except OSError:
        return (str(path.resolve()),)


def _pair_paths(source: Path, output: Path | None, scale_label: str,
                ext: str | None, suffix: str | None) -> list[tuple[Path, Path]]:
    tail = "" if suffix is None else f"_{suffix}" if suffix else ""
    if source.is_dir():
        if output is None:
            output = source.with_name(f"{source.name}_{scale_label}")
        if output.exists() and not output.is_dir():
            raise EdgesrError(f"{output}: input is a folder, so the output must be a folder")
        images = list_images(source)
        if not images:
            raise EdgesrError(f"{source}: no images found in folder")
        return [(p, output / f"{p.stem}{tail}{ext or p.suffix}") for p in images]
    if not source.exists():
        raise EdgesrError(f"{source}: input not found")
    if output is None:
        tail = f"_{scale_label}" if suffix is None else tail
        output = source.with_name(f"{source.stem}{tail}{ext or source.suffix}")
    elif output.is_dir():
        output = output / f"{source.stem}{tail}{ext or source.suffix}"
    elif suffix is not None:
        raise EdgesrError(f"--suffix names the outputs edgesr names; -o {output} names the "
                          "file itself (drop one)")
    return [(source, output)]


def upscale_many(upscaler: Upscaler, pairs: list[tuple[Path, Path]],
                 on_result: Callable[[FileResult], None], **kwargs) -> list[FileResult]:
    """Upscale every pair with ``upscale_file``'s options (``kwargs``); ``on_result`` gets each
    ``FileResult``. A failing file is reported and the run carries on. Temporary files that
    killed runs left in the output folders are removed first (``clean_stale_temps``)."""
    for folder in dict.fromkeys(target.parent for _, target in pairs):
        clean_stale_temps(folder)
    results = []
    for source, target in pairs:
        try:
            result = _upscale_file(upscaler, source, target, **kwargs)
        except EdgesrError as exc:
            result = FileResult(source, None, str(exc))
        except MemoryError:
            result = FileResult(source, None, f"{source}: out of memory; lower --max-output-"
                                "pixels, write PNG or TIFF (streamed) or use --max-memory")
        on_result(result)
        results.append(result)
    return results
