"""The one runtime protocol every backend follows (after Polygraphy's runners).

A runtime is created cheaply, ``activate()``-d to load its model or engine, fed NCHW float32
batches through ``infer()``, and ``deactivate()``-d to free resources; it is also a context
manager. The public methods check state and call the backend's ``*_impl`` methods.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from edgesr.errors import EdgesrError, InferenceError, RuntimeStateError


@dataclass(frozen=True, kw_only=True)
class RuntimeInfo:
    """What the tiler needs to know about a loaded model.

    ``fixed_hw``: the only input (height, width) the backend accepts, or None when height and
    width are dynamic. ``size_multiple``: dynamic inputs must be divisible by it.
    ``max_batch``: the largest batch accepted (None: unlimited). ``precision``: the precision
    that runs (fp32, fp16, bf16, int8, mixed; None: the backend cannot tell), ``precision_note``
    why, when it is not what was asked (e.g. a fallback), ``device``: where it runs.
    """

    scale: int
    in_channels: int
    out_channels: int
    fixed_hw: tuple[int, int] | None = None
    size_multiple: int = 1
    preferred_batch: int = 1
    max_batch: int | None = None
    precision: str | None = None
    precision_note: str = ""
    device: str = ""

    @property
    def dynamic(self) -> bool:
        return self.fixed_hw is None


class Runtime(ABC):
    """Base class of all backends. Subclasses implement the ``*_impl`` methods."""

    #: Registry name of the backend, e.g. ``"onnxruntime"``.
    name: str = ""

    def __init__(self) -> None:
        self._active = False
        self._info: RuntimeInfo | None = None
        #: Why this precision was chosen (``--precision auto``), set by whoever chose it.
        self.precision_reason = ""
        #: A precision the model file must run at (asked of a backend that takes it from the
        #: file, e.g. int8 on ONNX Runtime): activate() refuses a file that runs another.
        self.required_precision: str | None = None
        #: The backend options it was opened with (precision and device included), set by
        #: ``pipeline.open_runtime``: what a measurement of this runtime must use.
        self.options: dict = {}

    def describe(self) -> str:
        """What runs, in one line: backend, device, precision and why (once active)."""
        info = self.info
        notes = "; ".join(n for n in (self.precision_reason, info.precision_note) if n)
        where = f" on {info.device}" if info.device else ""
        return (f"{self.name}{where} at {info.precision or 'an unreported precision'}"
                + (f" ({notes})" if notes else ""))

    @property
    def is_active(self) -> bool:
        return self._active

    @property
    def info(self) -> RuntimeInfo:
        """Model properties; available once the runtime is active."""
        self._require_active("info")
        assert self._info is not None
        return self._info

    def activate(self) -> "Runtime":
        """Load the model or engine. Idempotent."""
        if not self._active:
            info = self.activate_impl()
            required = self.required_precision
            if required and info.precision not in (None, required):
                self.deactivate_impl()
                raise EdgesrError(f"{self.name}: this model runs at {info.precision}; "
                                  f"{required} on {self.name} needs a model file edgesr "
                                  f"quantize wrote at {required}")
            self._info = info
            self._active = True
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run an NCHW float32 batch in [0, 1]; return the NCHW float32 upscaled batch."""
        self._require_active("infer")
        info = self._info
        assert info is not None
        if batch.ndim != 4 or batch.shape[1] != info.in_channels:
            raise InferenceError(
                f"{self.name}: expected an NCHW batch with {info.in_channels} channels, "
                f"got shape {tuple(batch.shape)}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            out = self.infer_impl(batch)
        except EdgesrError:
            raise
        except Exception as exc:  # a backend's own error becomes one clear line
            raise InferenceError(f"{self.name}: inference failed: {exc}") from exc
        return out

    def deactivate(self) -> None:
        """Free the model or engine. Idempotent."""
        if self._active:
            self.deactivate_impl()
            self._active = False

    def __enter__(self) -> "Runtime":
        return self.activate()

    def __exit__(self, *exc_info) -> None:
        self.deactivate()

    def _require_active(self, what: str) -> None:
        if not self._active:
            raise RuntimeStateError(f"{self.name}: {what}() called on an inactive runtime; "
                                    "call activate() or use it as a context manager")

    @abstractmethod
    def activate_impl(self) -> RuntimeInfo:
        """Load the model; return its RuntimeInfo."""

    @abstractmethod
    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """Run one contiguous float32 NCHW batch."""

    def deactivate_impl(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release resources (default: nothing to release)."""
