"""edgesr: compiled edge deployment for AI image super-resolution.

``edgesr.load(...)`` gives a ``Session`` that upscales arrays and PIL images;
``edgesr.upscale_file(...)`` upscales one file (see ``edgesr.api``). Both are imported on first
use, so ``import edgesr`` stays light.
"""

from edgesr.errors import EdgesrError

__version__ = "0.1.0"
__all__ = ["EdgesrError", "Session", "__version__", "load", "upscale_file"]
_API = ("Session", "load", "upscale_file")


def __getattr__(name: str):
    if name in _API:
        from edgesr import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgesr' has no attribute {name!r}")
