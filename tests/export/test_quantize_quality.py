"""Quality report: metrics with known answers, JSON output, and the --min-psnr gate."""

import json

import numpy as np
import pytest

from edgesr.export.quality import (
    QualityGateError,
    check_quality,
    compare,
    quality_report,
    ssim,
)
from edgesr.fidelity import MAX_PSNR_DB


def test_identical_images_are_perfect(rng):
    img = rng.random((20, 24, 3)).astype(np.float32)
    m = compare(img, img)
    assert (m.max_abs_diff, m.psnr, m.ssim, m.share_off) == (0.0, MAX_PSNR_DB, 1.0, 0.0)


def test_known_offset_gives_known_psnr_and_share():
    ref = np.full((16, 16, 3), 0.5, np.float32)
    cand = ref.copy()
    cand[:8] += 0.01  # half the values off by 0.01 > 2/255
    m = compare(ref, cand)
    assert m.psnr == pytest.approx(-10 * np.log10(0.5 * 0.01**2), abs=1e-3)
    assert m.max_abs_diff == pytest.approx(0.01, abs=1e-6) and m.share_off == 0.5


def test_ssim_drops_with_noise_and_nan_counts_as_wrong(rng):
    img = rng.random((32, 32, 3))
    light = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    heavy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert 1.0 > ssim(img, light) > ssim(img, heavy) > 0.0
    broken = img.copy()
    broken[0, 0, 0] = np.nan
    assert compare(img, broken).max_abs_diff >= 0.5


def test_report_json_and_gate(tmp_path, smooth):
    images = [smooth(16, 16), smooth(16, 20)]
    ref = lambda x: np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)  # noqa: E731
    close = lambda x: ref(x) + 1e-3  # noqa: E731
    far = lambda x: ref(x) * 0.7  # noqa: E731
    good = quality_report(ref, close, images, artifact="m.onnx", precision="int8")
    assert good.psnr == pytest.approx(60.0, abs=0.01) and len(good.images) == 2
    check_quality(good, 50.0)
    path = good.write_json(tmp_path / "m.quality.json")
    assert json.loads(path.read_text())["psnr"] == pytest.approx(good.psnr)
    bad = quality_report(ref, far, images, artifact="m.onnx", precision="int8")
    assert bad.min_psnr <= bad.psnr < 30
    check_quality(bad, None)
    with pytest.raises(QualityGateError, match="below --min-psnr 40"):
        check_quality(bad, 40.0)


@pytest.fixture
def smooth(rng):
    from conftest import smooth_image

    return lambda h, w: smooth_image(rng, h, w)
