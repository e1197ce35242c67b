"""Per-tile seeding shared by the diffusion samplers (SD x4, SR3).

Each tile gets its own ``torch.Generator`` seeded by ``tile_seed(seed, tile)``, a hash of the
seed and the tile's pixels, so the same seed gives the same image whatever the batch, the tile
order or the other images of a folder run.
"""

import hashlib

import numpy as np
import torch


def tile_seed(seed: int, tile: np.ndarray) -> int:
    """The generator seed of one [3, H, W] float32 tile: 63 bits of sha256(seed, shape, pixels)."""
    tile = np.ascontiguousarray(tile, dtype=np.float32)
    digest = hashlib.sha256(f"{seed}:{tile.shape}:".encode() + tile.tobytes()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def tile_generator(seed: int, tile: np.ndarray) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``tile_seed(seed, tile)``."""
    return torch.Generator().manual_seed(tile_seed(seed, tile))
