"""Real-ESRGAN-style degradations and synthetic source images, NumPy and Pillow only.

Real-ESRGAN trains on high-resolution crops degraded by blur (isotropic or anisotropic
Gaussian), resizing (bicubic, bilinear, area), noise (Gaussian or Poisson) and JPEG
re-compression. Calibration inputs should look like that, since that is what the model sees in
use. Every function takes an explicit ``numpy.random.Generator``: the same seed gives the same
pixels. Images are HWC float32 in [0, 1].
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

RESIZE_MODES = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "area": Image.Resampling.BOX}


@dataclass(frozen=True, kw_only=True)
class DegradationConfig:
    """Ranges the degradation pipeline draws from (defaults follow Real-ESRGAN's first order)."""

    blur_prob: float = 0.8
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    sigma_range: tuple[float, float] = (0.2, 3.0)
    anisotropic_prob: float = 0.5
    downscale_range: tuple[float, float] = (1.0, 2.0)
    gaussian_noise_prob: float = 0.5
    noise_sigma_range: tuple[float, float] = (1.0 / 255, 25.0 / 255)
    poisson_scale_range: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 0.9
    jpeg_range: tuple[int, int] = (30, 95)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> np.ndarray:
    """A normalised ``size`` x ``size`` (odd) Gaussian kernel, anisotropic and rotated by theta."""
    half = size // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    cos, sin = np.cos(theta), np.sin(theta)
    u = cos * xx + sin * yy
    v = -sin * xx + cos * yy
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with ``kernel`` using reflect padding; same size out."""
    k = kernel.shape[0] // 2
    padded = np.pad(img, ((k, k), (k, k), (0, 0)), mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape, axis=(0, 1))
    return np.einsum("hwcij,ij->hwc", windows, kernel[::-1, ::-1], optimize=True).astype(np.float32)


def resize(img: np.ndarray, height: int, width: int, mode: str = "bicubic") -> np.ndarray:
    """Resize an HWC float image per channel with Pillow (``bicubic``, ``bilinear``, ``area``)."""
    resample = RESIZE_MODES[mode]
    channels = [np.asarray(Image.fromarray(img[..., c], mode="F").resize((width, height), resample))
                for c in range(img.shape[2])]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def add_gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float,
                       gray: bool = False) -> np.ndarray:
    """Add zero-mean Gaussian noise of std ``sigma`` (shared across channels when ``gray``)."""
    shape = img.shape[:2] + (1,) if gray else img.shape
    noise = rng.normal(0.0, sigma, shape).astype(np.float32)
    return np.clip(img + noise, 0.0, 1.0)


def add_poisson_noise(img: np.ndarray, rng: np.random.Generator, scale: float,
                      gray: bool = False) -> np.ndarray:
    """Add shot noise: Poisson counts at 8-bit levels, the deviation scaled by ``scale``."""
    base = img.mean(axis=2, keepdims=True) if gray else img
    levels = np.clip(base * 255.0, 0, None)
    noise = (rng.poisson(levels) - levels) / 255.0 * scale
    return np.clip(img + noise.astype(np.float32), 0.0, 1.0)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through 8-bit JPEG at ``quality`` (1-100)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Round an image in [0, 1] to uint8."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def degrade(img: np.ndarray, rng: np.random.Generator, out_hw: tuple[int, int],
            config: DegradationConfig | None = None) -> np.ndarray:
    """Blur, resize to ``out_hw``, add noise and JPEG-compress an RGB HWC image."""
    cfg = config or DegradationConfig()
    out = img.astype(np.float32)
    if rng.random() < cfg.blur_prob:
        size = int(rng.choice(cfg.kernel_sizes))
        sx = rng.uniform(*cfg.sigma_range)
        anisotropic = rng.random() < cfg.anisotropic_prob
        sy = rng.uniform(*cfg.sigma_range) if anisotropic else sx
        theta = rng.uniform(0, np.pi) if anisotropic else 0.0
        out = blur(out, gaussian_kernel(size, sx, sy, theta))
    out = resize(out, out_hw[0], out_hw[1], str(rng.choice(list(RESIZE_MODES))))
    gray = rng.random() < cfg.gray_noise_prob
    if rng.random() < cfg.gaussian_noise_prob:
        out = add_gaussian_noise(out, rng, rng.uniform(*cfg.noise_sigma_range), gray)
    else:
        out = add_poisson_noise(out, rng, rng.uniform(*cfg.poisson_scale_range), gray)
    if out.shape[2] == 3 and rng.random() < cfg.jpeg_prob:
        out = jpeg(out, int(rng.integers(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1)))
    return out


def synthetic_image(rng: np.random.Generator, height: int, width: int,
                    channels: int = 3) -> np.ndarray:
    """A photo-like test pattern: a colour gradient, textures, hard-edged shapes and fine noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= max(height - 1, 1)
    xx /= max(width - 1, 1)
    a, b = rng.uniform(0.1, 0.9, (2, channels)).astype(np.float32)
    img = a + (b - a) * (xx * rng.uniform(0, 1) + yy * rng.uniform(0, 1))[..., None] / 2
    for _ in range(int(rng.integers(1, 4))):  # textures at random frequencies and angles
        freq, angle, amp = rng.uniform(4, 40), rng.uniform(0, np.pi), rng.uniform(0.03, 0.15)
        wave = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi)
        img = img + amp * wave[..., None] * rng.uniform(0.3, 1.0, channels).astype(np.float32)
    for _ in range(int(rng.integers(3, 9))):  # rectangles and discs with sharp edges
        colour = rng.uniform(0, 1, channels).astype(np.float32)
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        if rng.random() < 0.5:
            mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * rng.uniform(0.3, 2))
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[mask] = colour
    img = img + rng.normal(0, 0.01, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
