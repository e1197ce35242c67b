"""What the diffusion backends (sd-upscaler, sr3) share: per-tile seeding and session opening.

Seeding: each tile gets its own ``torch.Generator`` seeded by ``tile_seed(seed, tile)``, a hash
of the seed and the tile's pixels, so the same seed gives the same image whatever the batch,
the tile order or the other images of a folder run.
"""

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edgesr.errors import CheckpointError
from edgesr.runtimes.onnxruntime_runtime import DEVICE_PROVIDERS, require_providers


def tile_seed(seed: int, tile: np.ndarray) -> int:
    """The generator seed of one [3, H, W] float32 tile: 63 bits of sha256(seed, shape, pixels)."""
    tile = np.ascontiguousarray(tile, dtype=np.float32)
    digest = hashlib.sha256(f"{seed}:{tile.shape}:".encode() + tile.tobytes()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def tile_generator(seed: int, tile: np.ndarray) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``tile_seed(seed, tile)``."""
    return torch.Generator().manual_seed(tile_seed(seed, tile))


def open_session(path: Path, backend: str, *, device: str, providers: tuple[str, ...],
                 threads: int) -> ort.InferenceSession:
    """An ONNX Runtime session for ``path`` on ``providers`` (or those of ``device``); a missing
    provider or an unloadable file is one clear line naming ``backend``."""
    providers = list(providers or DEVICE_PROVIDERS[device])
    require_providers(backend, providers)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime's load errors are not one class
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({text})") from None
