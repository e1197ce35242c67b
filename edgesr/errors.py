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
