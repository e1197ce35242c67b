"""The one exception tree of edgesr: every user-facing failure is an EdgesrError."""


class EdgesrError(Exception):
    """Base of every error edgesr raises on bad input or a failed build."""


class CheckpointError(EdgesrError):
    """A model file is missing, unreadable or corrupt."""


class UnsupportedArchitectureError(EdgesrError):
    """A state_dict matches no known architecture."""


class ImageReadError(EdgesrError):
    """An input file is not a readable image."""


class ImageWriteError(EdgesrError):
    """An output image could not be written."""


class ExportError(EdgesrError):
    """ONNX export failed or its parity check against PyTorch did not pass."""


class BackendUnavailableError(EdgesrError):
    """A runtime backend is unknown, or its optional dependency is not installed."""


class RuntimeStateError(EdgesrError):
    """A runtime was used before activate() or after deactivate()."""


class InferenceError(EdgesrError):
    """A backend failed while running the model."""


class TilingError(EdgesrError):
    """Invalid tiling or blending arguments, or an image the upscaler cannot take."""


#: Lines that locate an error in a library's sources instead of saying what went wrong
#: (OpenVINO: "Exception from src/inference/src/cpp/core.cpp:84:").
_LOCATION_LINE = ("Exception from src/", "Check '", "Traceback (most recent call last)")


def first_line(exc: BaseException | str) -> str:
    """The first line of an exception's message (or of a message kept as text) that says what
    went wrong (skipping lines that only give a source location; a line ending in ":" gets the
    next one), or the exception's type name when it has no message."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if not line.startswith(_LOCATION_LINE) and not line.endswith(".cpp:"):
            return f"{line} {lines[i + 1]}" if line.endswith(":") and i + 1 < len(lines) else line
    if lines:
        return lines[0]
    return "" if isinstance(exc, str) else type(exc).__name__


#: Modules that only an extra of ``pip install edgesr[...]`` installs -> that extra.
EXTRA_OF_MODULE = {
    "torch": "export", "onnxscript": "export", "safetensors": "export", "matplotlib": "bench",
    "nncf": "quantize", "onnxconverter_common": "quantize", "openvino": "openvino",
    "coremltools": "coreml", "polygraphy": "compare", "diffusers": "diffusion",
    "transformers": "diffusion", "tensorrt": "tensorrt", "cuda": "tensorrt",
}


def missing_extra(exc: ImportError) -> str | None:
    """For an import of a module that an edgesr extra installs: one line naming the extra to
    install; None for any other import error."""
    module = (getattr(exc, "name", None) or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f"this needs {module}, which is not installed: pip install 'edgesr[{extra}]'"
