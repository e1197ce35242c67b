"""Shared fixtures: tiny models written as checkpoint files, synthetic images."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import TINY_MODELS, make_tiny  # noqa: E402


@pytest.fixture(params=sorted(TINY_MODELS))
def tiny_name(request) -> str:
    """Every tiny model family, one test run each."""
    return request.param


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_name) -> Path:
    """A basicsr-style .pth file (weights under ``params_ema``) of a tiny model."""
    path = tmp_path / f"{tiny_name}.pth"
    torch.save({"params_ema": make_tiny(tiny_name).state_dict()}, path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def smooth_image(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    """A synthetic HWC float32 image in [0, 1] with structure at several frequencies."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, c), np.float32)
    for ch in range(c):
        fx, fy, phase = rng.uniform(0.02, 0.3, 2).tolist() + [rng.uniform(0, 6.28)]
        img[..., ch] = 0.5 + 0.35 * np.sin(fx * xx + phase) * np.cos(fy * yy)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return np.clip(img, 0, 1)
