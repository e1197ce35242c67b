"""Degradations: seeded, shape- and range-preserving, and each one actually changes the image."""

import numpy as np
import pytest

from edgesr.calibration.degradations import (
    add_gaussian_noise,
    add_poisson_noise,
    blur,
    degrade,
    gaussian_kernel,
    jpeg,
    resize,
    synthetic_image,
)


@pytest.fixture
def image() -> np.ndarray:
    return synthetic_image(np.random.default_rng(0), 48, 40)


def test_synthetic_image_is_seeded_and_in_range(image):
    again = synthetic_image(np.random.default_rng(0), 48, 40)
    assert image.shape == (48, 40, 3) and image.dtype == np.float32
    assert np.array_equal(image, again)
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.05


@pytest.mark.parametrize("sx, sy, theta", [(1.5, 1.5, 0.0), (3.0, 0.5, 0.7)])
def test_gaussian_kernel_normalised_and_shaped(sx, sy, theta):
    k = gaussian_kernel(11, sx, sy, theta)
    assert k.shape == (11, 11) and abs(k.sum() - 1) < 1e-5
    assert np.allclose(k, k[::-1, ::-1])  # point-symmetric
    if sx == sy:
        assert np.allclose(k, k.T, atol=1e-7)
    else:
        assert not np.allclose(k, k.T, atol=1e-4)


def test_blur_keeps_constant_and_smooths(image):
    flat = np.full((20, 20, 3), 0.4, np.float32)
    k = gaussian_kernel(7, 2.0, 2.0)
    assert np.allclose(blur(flat, k), 0.4, atol=1e-6)
    out = blur(image, k)
    assert out.shape == image.shape
    assert np.abs(np.diff(out, axis=1)).mean() < np.abs(np.diff(image, axis=1)).mean()


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "area"])
def test_resize_shape_and_range(image, mode):
    out = resize(image, 24, 20, mode)
    assert out.shape == (24, 20, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_noise_and_jpeg_change_pixels_within_range(image):
    rng = np.random.default_rng(1)
    for out in (add_gaussian_noise(image, rng, 0.05), add_gaussian_noise(image, rng, 0.05, True),
                add_poisson_noise(image, rng, 1.0), jpeg(image, 30)):
        assert out.shape == image.shape and 0.0 <= out.min() and out.max() <= 1.0
        assert 0.001 < np.abs(out - image).mean() < 0.1
    gray = add_gaussian_noise(image, rng, 0.05, gray=True) - image
    inner = (image > 0.3) & (image < 0.7)  # unclipped pixels: gray noise equal on all channels
    rows = inner.all(axis=2)
    assert np.allclose(gray[rows][:, 0], gray[rows][:, 1], atol=1e-5)


def test_degrade_is_seeded(image):
    a = degrade(image, np.random.default_rng(5), (16, 16))
    b = degrade(image, np.random.default_rng(5), (16, 16))
    c = degrade(image, np.random.default_rng(6), (16, 16))
    assert a.shape == (16, 16, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
