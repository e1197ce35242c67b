"""The Python API: load a model once, upscale arrays or PIL images from any thread.

```python
import edgesr
with edgesr.load("realesrgan-x4plus", backend="onnxruntime", precision="auto") as sr:
    out = sr.upscale(img)   # NumPy uint8/uint16/float HWC or HW, or a PIL image -> same type
    print(sr.describe())    # what runs: backend, device, precision (and why)
edgesr.upscale_file("in.jpg", "out.png")
```

A ``Session`` owns one active runtime and its ``Upscaler``. Calls are serialised by a per-session
lock: one upscale already keeps every thread the backend was given busy, and no backend then sees
two callers at once (OpenVINO's infer requests, TensorRT contexts and CoreML models are not
re-entrant). Threads may share one session freely; open one session per device to run devices
side by side.
"""

import threading
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgesr.errors import EdgesrError, TilingError
from edgesr.kernels.blend import to_uint
from edgesr.pipeline import open_runtime, resolve_model
from edgesr.pipeline import upscale_file as _upscale_file
from edgesr.upscaler import Upscaler

Image = TypeVar("Image")
#: PIL modes taken as they are, and those converted first (palette, CMYK, ...) -> the mode the
#: result comes back in.
_PIL_MODES = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "I;16": "I;16"}


class Session:
    """A model loaded on one backend (see ``load``); use as a context manager or ``close()``."""

    def __init__(self, runtime, upscaler: Upscaler, model: Path, backend: str):
        self._runtime = runtime
        self._upscaler = upscaler
        self._lock = threading.Lock()
        self.model = model
        self.backend = backend

    @property
    def precision(self) -> str | None:
        """The precision that runs (fp32, fp16, bf16, int8, mixed; None: not reported)."""
        return self._runtime.info.precision

    @property
    def device(self) -> str:
        """The device the backend runs on, as the backend names it ("" if it has one)."""
        return self._runtime.info.device

    def describe(self) -> str:
        """One line: backend, device, precision that runs, and why (a fallback, auto's gate)."""
        return self._runtime.describe()

    @property
    def scale(self) -> int:
        """The model's upscale factor (e.g. 4)."""
        return self._runtime.info.scale

    def upscale(self, image: Image, *, outscale: float | None = None) -> Image:
        """Upscale ``image``; the result has its type, dtype and channels.

        NumPy arrays: HW or HWC with 1-4 channels, uint8 (0-255), uint16 (0-65535) or float
        (0-1, returned as float32). PIL images: L, LA, RGB, RGBA, I;16 (16-bit grey) come back
        in their mode; P, PA, CMYK and others are converted to RGB(A) first and come back so.
        ``outscale``: a final scale other than the model's (antialiased bicubic resize).
        """
        if _is_pil(image):
            return self._upscale_pil(image, outscale)
        if not isinstance(image, np.ndarray):
            raise TilingError(f"expected a NumPy array or a PIL image, got "
                              f"{type(image).__name__}")
        if image.dtype == np.uint8 or image.dtype == np.uint16:
            bits = 8 if image.dtype == np.uint8 else 16
            pixels = image.astype(np.float32) / np.float32((1 << bits) - 1)
            return to_uint(self._run(pixels, outscale), bits)
        if np.issubdtype(image.dtype, np.floating):
            if not np.isfinite(image).all():
                raise TilingError("the image holds NaN or infinite values")
            return self._run(image, outscale)
        raise TilingError(f"expected a uint8, uint16 or float image, got {image.dtype}")

    def tile_count(self, height: int, width: int) -> int:
        """How many tiles an image of ``height`` x ``width`` input pixels is cut into."""
        return len(self._upscaler.plan(height, width))

    def upscale_file(self, source: str | Path, target: str | Path, *,
                     outscale: float | None = None, bit_depth: int | None = None) -> Path:
        """Upscale one image file to ``target`` (format from the extension, written atomically,
        EXIF orientation applied, ICC profile and DPI carried over, as ``edgesr upscale`` writes
        it, the source's EXIF carried into JPEG, PNG and WebP outputs); return the written path."""
        with self._lock:
            self._require_open()
            return _upscale_file(self._upscaler, Path(source), Path(target), outscale=outscale,
                                 bit_depth=bit_depth)

    def _run(self, pixels: np.ndarray, outscale: float | None) -> np.ndarray:
        with self._lock:
            self._require_open()
            return self._upscaler.upscale(pixels, outscale=outscale)

    def _require_open(self) -> None:
        if not self._runtime.is_active:
            raise EdgesrError("this edgesr session is closed")

    def _upscale_pil(self, image, outscale: float | None):
        from PIL import Image as PILImage

        mode = _PIL_MODES.get(image.mode)
        if mode is None:
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            mode = "RGBA" if has_alpha else "RGB"
            image = image.convert(mode)
        dtype = np.uint16 if mode == "I;16" else np.uint8
        out = PILImage.fromarray(self.upscale(np.asarray(image, dtype=dtype), outscale=outscale))
        if out.mode != mode:
            raise TilingError(f"a {mode} image came back as {out.mode}")
        return out

    def close(self) -> None:
        """Release the backend; later calls raise EdgesrError."""
        with self._lock:
            if self._runtime.is_active:
                self._runtime.deactivate()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<edgesr.Session {self.model.name} on {self.backend}, x{self.scale}, "
                f"{self.precision}>")


def load(model: str | Path | None = None, *, backend: str | None = None,
         precision: str | None = None, device: str | None = None, tile: int = 256,
         overlap: int = 32, batch: int | None = None, blend: str | None = None,
         **options: Any) -> Session:
    """Load ``model`` (a bundled name such as "realesrgan-x4plus", a checkpoint, an ncnn
    ``.param``, an ``.onnx`` file or a built engine; default: the bundled x4plus) on ``backend``
    (default: by file type) at ``precision`` (auto|fp32|fp16|bf16|int8; None: what the model
    records, else FP32; auto: the fastest the device runs natively that keeps 40 dB against
    FP32, see ``edgesr.precision``) on ``device`` (the backend's: "CPU"/"GPU" for OpenVINO,
    "cpu"/"cuda" for ONNX Runtime, a CUDA index for TensorRT), with that backend's ``options``
    (e.g. ``threads=2``); ``tile``/``overlap`` in input pixels (tile 0: whole image)."""
    runtime = open_runtime(None if model is None else str(model), backend,
                           precision=precision, device=device, **options)
    runtime.activate()
    try:
        upscaler = Upscaler(runtime, tile=tile, overlap=overlap, batch=batch, blend=blend)
    except BaseException:
        runtime.deactivate()
        raise
    return Session(runtime, upscaler, resolve_model(None if model is None else str(model)),
                   runtime.name)


def upscale_file(source: str | Path, target: str | Path, *, model: str | Path | None = None,
                 backend: str | None = None, outscale: float | None = None,
                 bit_depth: int | None = None, tile: int = 256, overlap: int = 32,
                 **options: Any) -> Path:
    """Upscale one image file to ``target`` (format from its extension, written atomically;
    EXIF orientation, ICC profile and DPI carried over); return the written path."""
    with load(model, backend=backend, tile=tile, overlap=overlap, **options) as session:
        return session.upscale_file(source, target, outscale=outscale, bit_depth=bit_depth)


def _is_pil(image: object) -> bool:
    """Whether ``image`` is a PIL image, without importing PIL for NumPy callers."""
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image"
               for c in type(image).__mro__)
