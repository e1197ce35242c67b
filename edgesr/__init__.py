"""edgesr: compiled edge deployment for AI image super-resolution."""

from edgesr.errors import EdgesrError

__version__ = "0.1.0"
__all__ = ["EdgesrError", "__version__"]
