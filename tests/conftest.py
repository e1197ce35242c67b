"""Shared fixtures and helpers: tiny models (as checkpoint files, descriptors, exported ONNX),
quantization inputs, synthetic images."""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgesr.models import model_from_state_dict
from edgesr.models.descriptor import OutputResize

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import TINY_MODELS, make_tiny  # noqa: E402

RESIZED = {"resize_x2": 0.5, "resize_x3": 0.75}  # animevideov3 x2/x3: compact x4 + bicubic


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


PHOTO = Path(__file__).parent / "data" / "grace_hopper_480.jpg"


def photo(size: int) -> np.ndarray:
    """The centre size x size crop of a real photo (tests/data/README.md), HWC float32 in [0, 1]."""
    from PIL import Image

    with Image.open(PHOTO) as im:
        pixels = np.asarray(im.convert("RGB"), np.float32) / 255
    top = (pixels.shape[0] - size) // 2
    left = (pixels.shape[1] - size) // 2
    return np.ascontiguousarray(pixels[top:top + size, left:left + size])


def tiny_descriptor(family: str):
    """The descriptor of a tiny model: a ``TINY_MODELS`` family or one of ``RESIZED``."""
    if family in RESIZED:
        desc = model_from_state_dict(make_tiny("compact_x4").state_dict())
        factor = RESIZED[family]
        return replace(desc, model=OutputResize(desc.model, factor).eval(), scale=int(4 * factor))
    return model_from_state_dict(make_tiny(family).state_dict())


def torch_forward(desc, x: np.ndarray) -> np.ndarray:
    """The PyTorch model's output for an NCHW float32 batch."""
    with torch.no_grad():
        return desc.model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """family -> (descriptor, ONNX path, export report) of ``tiny_descriptor(family)``, each
    family exported once per test module."""
    from edgesr.export.onnx_export import export_onnx

    cache = {}
    folder = tmp_path_factory.mktemp("onnx")

    def get(family: str):
        if family not in cache:
            desc = tiny_descriptor(family)
            path = folder / f"{family}.onnx"
            cache[family] = desc, path, export_onnx(desc, path)
        return cache[family]

    return get


def make_quantize_setup(family: str, folder: Path):
    """(descriptor, FP32 ONNX path, calibration set, held-out images) of tiny model ``family``."""
    from edgesr.calibration import build_calibration_set, evaluation_images
    from edgesr.export.onnx_export import export_onnx

    descriptor = tiny_descriptor(family)
    path = export_onnx(descriptor, folder / f"{family}.onnx", check=False).path
    return (descriptor, path, build_calibration_set(count=3, tile=16, seed=0),
            evaluation_images(count=2, size=16))


@pytest.fixture(scope="module")
def quantize_setup(tmp_path_factory):
    """``make_quantize_setup`` of tiny compact x4."""
    return make_quantize_setup("compact_x4", tmp_path_factory.mktemp("m"))


def quantized_psnr(setup, path) -> float:
    """PSNR of an artifact (ONNX or OpenVINO IR) against ``quantize_setup``'s PyTorch model."""
    from edgesr.export.quality import artifact_runner, quality_report, torch_runner

    descriptor, _, _, images = setup
    return quality_report(torch_runner(descriptor), artifact_runner(path), images,
                          artifact=str(path), precision="quantized").psnr


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test writes derived artifacts (ONNX exports, engines) under a temporary cache, not
    ~/.cache/edgesr; a test that sets EDGESR_CACHE itself overrides it."""
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path_factory.getbasetemp() / "edgesr-cache"))
