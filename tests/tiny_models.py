"""A small registry of tiny random-initialised models, one per family edgesr supports.

Tests import ``TINY_MODELS`` / ``make_tiny`` instead of defining their own networks, so every
suite exercises the same families. Weights are seeded: same name, same model.
"""

import torch

from edgesr.models.compact import SRVGGNetCompact
from edgesr.models.rrdbnet import RRDBNet

TINY_MODELS = {
    "rrdb_x4": lambda: RRDBNet(3, 3, scale=4, num_feat=16, num_block=2, num_grow_ch=8),
    "rrdb_x2": lambda: RRDBNet(3, 3, scale=2, num_feat=16, num_block=1, num_grow_ch=8),
    "rrdb_x1": lambda: RRDBNet(3, 3, scale=1, num_feat=16, num_block=1, num_grow_ch=8),
    "compact_x4": lambda: SRVGGNetCompact(3, 3, num_feat=16, num_conv=4, upscale=4),
    "compact_x2": lambda: SRVGGNetCompact(3, 3, num_feat=16, num_conv=2, upscale=2),
}

TINY_SCALES = {"rrdb_x4": 4, "rrdb_x2": 2, "rrdb_x1": 1, "compact_x4": 4, "compact_x2": 2}


def make_tiny(name: str, seed: int = 0) -> torch.nn.Module:
    """Build tiny model ``name`` with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    model = TINY_MODELS[name]()
    return model.eval()
