"""Calibration sets: degraded crops at the model's tile size, saved as .npz, fed to calibrators.

A ``CalibrationSet`` holds N crops as uint8 NCHW (8-bit, like the images it stands for, and
compact on disk). It is an iterable of (1, C, H, W) float32 arrays, which ``nncf.Dataset``
accepts as is; ``batches()`` yields larger contiguous batches (TensorRT calibrators), and
``OrtCalibrationReader`` adapts it to ONNX Runtime's ``CalibrationDataReader``.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgesr.calibration.degradations import (
    DegradationConfig,
    degrade,
    synthetic_image,
    to_uint8,
)
from edgesr.errors import EdgesrError
from edgesr.fsutil import atomic_open


class CalibrationError(EdgesrError):
    """A calibration set could not be built, read or written."""


@dataclass(frozen=True, eq=False)
class CalibrationSet:
    """N calibration crops, ``images`` uint8 NCHW; ``meta`` records how they were made."""

    images: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8 or len(self.images) == 0:
            raise CalibrationError(f"calibration images must be a non-empty uint8 NCHW array, "
                                   f"got {self.images.dtype} {self.images.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        """Sample ``index`` as a (1, C, H, W) float32 array in [0, 1]."""
        return self.images[index:index + 1].astype(np.float32) / 255.0

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def batches(self, batch_size: int = 1) -> Iterator[np.ndarray]:
        """Contiguous (B, C, H, W) float32 batches; the last one may be smaller."""
        for start in range(0, len(self), batch_size):
            yield np.ascontiguousarray(self.images[start:start + batch_size], np.float32) / 255.0

    @property
    def tile(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def save(self, path: str | Path) -> Path:
        """Write a compressed .npz, whole or not at all (``fsutil.atomic_open``)."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path) as fh:
                np.savez_compressed(fh, images=self.images, meta=json.dumps(self.meta))
        except OSError as exc:
            raise CalibrationError(f"{path}: cannot write calibration set: {exc}") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationSet":
        """Read a set written by ``save``."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["images"], json.loads(str(data["meta"])))
        except (OSError, KeyError, ValueError) as exc:
            raise CalibrationError(f"{path}: not a calibration set ({exc})") from None


class OrtCalibrationReader(CalibrationDataReader):
    """ONNX Runtime calibration reader over a CalibrationSet, fed to input ``input_name``."""

    def __init__(self, calib: CalibrationSet, input_name: str = "input", batch_size: int = 1):
        self.calib = calib
        self.input_name = input_name
        self.batch_size = batch_size
        self.set_range(0, len(calib))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self.set_range(self._start, self._end)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict the reader to samples [start_index, end_index) (ORT's strided calibration)."""
        self._start, self._end = start_index, end_index
        subset = CalibrationSet(self.calib.images[start_index:end_index])
        self._iter = ({self.input_name: b} for b in subset.batches(self.batch_size))

    def __len__(self) -> int:
        return len(self.calib)


def _as_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Drop alpha or replicate gray so an HWC image has ``channels`` channels."""
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] >= channels:
        return img[..., :channels]
    return np.repeat(img[..., :1], channels, axis=2)


def _load_folder(folder: Path, channels: int) -> list[np.ndarray]:
    from edgesr.imageio import list_images, read_image

    paths = list_images(folder) if folder.is_dir() else [folder]
    if not paths:
        raise CalibrationError(f"{folder}: no images found")
    return [_as_channels(read_image(p).pixels, channels) for p in paths]


def _crop(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = min(size, h), min(size, w)
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return img[y:y + ch, x:x + cw]


def build_calibration_set(source: str | Path | None = None, *, count: int = 32, tile: int = 64,
                          channels: int = 3, seed: int = 0,
                          config: DegradationConfig | None = None) -> CalibrationSet:
    """Degraded ``tile`` x ``tile`` crops from images in ``source`` (synthetic images if None).

    Each sample is a random crop ``tile`` times a random factor from ``config.downscale_range``,
    degraded and resized down to ``tile``; the same arguments give the same set.
    """
    if count < 1 or tile < 8:
        raise CalibrationError(f"need count >= 1 and tile >= 8, got count={count}, tile={tile}")
    cfg = config or DegradationConfig()
    rng = np.random.default_rng(seed)
    sources = _load_folder(Path(source), channels) if source is not None else None
    order = rng.permutation(len(sources)) if sources else None
    out = np.empty((count, channels, tile, tile), np.uint8)
    for i in range(count):
        crop_size = int(round(tile * rng.uniform(*cfg.downscale_range)))
        if sources:
            crop = _crop(sources[order[i % len(sources)]], rng, crop_size)
        else:
            crop = synthetic_image(rng, crop_size, crop_size, channels)
        out[i] = to_uint8(degrade(crop, rng, (tile, tile), cfg)).transpose(2, 0, 1)
    meta = {"source": str(source) if source is not None else "synthetic", "count": count,
            "tile": tile, "seed": seed}
    return CalibrationSet(out, meta)


def evaluation_images(source: str | Path | None = None, *, count: int = 4, size: int = 64,
                      channels: int = 3, seed: int = 10_000) -> list[np.ndarray]:
    """Held-out HWC float32 images for quality reports: centre crops of at most ``size`` pixels
    from ``source``, or degraded synthetic images drawn with a seed apart from calibration's."""
    if source is not None:
        images = _load_folder(Path(source), channels)[:count]
        crops = []
        for img in images:
            h, w = img.shape[:2]
            y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
            crops.append(np.ascontiguousarray(img[y:y + size, x:x + size], np.float32))
        return crops
    rng = np.random.default_rng(seed)
    return [to_uint8(degrade(synthetic_image(rng, 2 * size, 2 * size, channels), rng,
                             (size, size))).astype(np.float32) / 255.0 for _ in range(count)]
