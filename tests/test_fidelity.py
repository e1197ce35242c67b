"""Consistency map and score: exact for an identity-like model; a pattern is found where it is."""

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image
from stub_runtimes import NearestRuntime
from tiny_models import make_tiny

from edgesr.cli import main
from edgesr.errors import EdgesrError
from edgesr.fidelity import (
    DOWNSAMPLE_METHODS,
    MAX_PSNR_DB,
    consistency_map,
    consistency_score,
    downscale,
    write_consistency_map,
)
from edgesr.upscaler import Upscaler

BOX = (16, 32, 8, 24)  # y0, y1, x0, x1 in input pixels


def _upscaled(image: np.ndarray, scale: int = 4, pattern=None, tile: int = 0) -> np.ndarray:
    with NearestRuntime(scale, pattern) as runtime:
        return Upscaler(runtime, tile=tile, overlap=4).upscale(image)


def _inside(error: np.ndarray, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pixels inside BOX, pixels farther than ``margin`` outside it)."""
    y0, y1, x0, x1 = BOX
    inside = np.zeros(error.shape, bool)
    inside[y0:y1, x0:x1] = True
    near = np.zeros(error.shape, bool)
    near[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin] = True
    return error[inside], error[~near]


def test_identity_like_model_is_exact_with_area(rng):
    image = smooth_image(rng, 48, 40)
    output = _upscaled(image, tile=16)  # tiled and blended: nearest tiles agree on overlaps
    assert output.shape == (192, 160, 3)
    assert consistency_score(image, output, "area") == MAX_PSNR_DB
    assert consistency_map(image, output, "area").max() < 1e-6


def test_identity_like_model_is_near_perfect_with_bicubic(rng):
    image = smooth_image(rng, 48, 40)
    assert consistency_score(image, _upscaled(image), "bicubic") > 35


def test_pattern_flagged_exactly_where_it_is_area(rng):
    image = 0.3 + 0.4 * smooth_image(rng, 48, 40)  # away from 0 and 1: the stripes never clip
    error = consistency_map(image, _upscaled(image, pattern=BOX), "area")
    inside, outside = _inside(error)
    assert inside.min() > 0.15
    assert outside.max() < 1e-6


def test_pattern_flagged_where_it_is_bicubic(rng):
    image = 0.3 + 0.4 * smooth_image(rng, 48, 40)
    output = _upscaled(image, pattern=BOX)
    error = consistency_map(image, output, "bicubic")
    inside, outside = _inside(error, margin=2)  # the bicubic kernel reaches 2 input pixels
    assert inside.mean() > 0.1
    assert outside.max() < 0.02
    assert consistency_score(image, output, "bicubic") < consistency_score(
        image, _upscaled(image), "bicubic") - 10


def test_map_png_is_input_sized_and_bright_where_the_pattern_is(tmp_path, rng):
    image = 0.3 + 0.4 * smooth_image(rng, 48, 40)
    path = tmp_path / "map.png"
    score = write_consistency_map(path, image, _upscaled(image, pattern=BOX), method="area")
    with Image.open(path) as im:
        assert im.size == (40, 48)
        luma = np.asarray(im.convert("L"), np.float32)
    inside, outside = _inside(luma)
    assert inside.min() > 150 and outside.max() < 20
    assert 10 < score < 30


def test_bad_inputs_raise_one_clear_error(rng):
    image = smooth_image(rng, 8, 8)
    with pytest.raises(EdgesrError, match="downsampling"):
        downscale(image, 4, 4, "lanczos")
    with pytest.raises(EdgesrError, match="smaller"):
        consistency_score(image, image[:4], "area")


def test_upscale_cli_writes_the_map(tmp_path, rng):
    tiny_checkpoint = tmp_path / "compact_x2.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, tiny_checkpoint)
    source = tmp_path / "in.png"
    Image.fromarray((smooth_image(rng, 20, 28) * 255).astype(np.uint8)).save(source)
    args = ["upscale", str(source), "-m", str(tiny_checkpoint), "-o", str(tmp_path / "out.png"),
            "--tile", "16", "--overlap", "4", "-q", "--consistency-downsample", "area"]
    assert main(args + ["--consistency-map", str(tmp_path / "map.png")]) == 0
    with Image.open(tmp_path / "map.png") as im, Image.open(tmp_path / "out.png") as out:
        assert im.size == (28, 20) and out.size == (56, 40)
    assert main(["upscale", str(tmp_path), "-m", str(tiny_checkpoint), "-q",
                 "--consistency-map", str(tmp_path / "m2.png")]) == 1


@pytest.mark.parametrize("flag", [["--stream"], ["--max-memory", "2G"]])
def test_consistency_map_refuses_stream_and_memory_budget(tmp_path, rng, capsys, flag):
    checkpoint = tmp_path / "compact_x2.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, checkpoint)
    source = tmp_path / "in.png"
    Image.fromarray((smooth_image(rng, 20, 28) * 255).astype(np.uint8)).save(source)
    assert main(["upscale", str(source), "-m", str(checkpoint), "-o", str(tmp_path / "out.png"),
                 "-q", "--consistency-map", str(tmp_path / "map.png"), *flag]) == 1
    assert "takes no --stream or --max-memory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compact_x2.pth", "in.png"]


@pytest.mark.parametrize("method", DOWNSAMPLE_METHODS)
@pytest.mark.parametrize("size", [(64, 64, 16, 16), (50, 37, 17, 11), (30, 31, 30, 7)])
def test_downscale_matches_torch_interpolate(rng, method, size):
    h, w, height, width = size
    image = rng.random((h, w, 3), dtype=np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    kwargs = {} if method == "area" else dict(antialias=True, align_corners=False)
    ref = torch.nn.functional.interpolate(x, size=(height, width), mode=method, **kwargs)
    out = downscale(image, height, width, method)
    assert out.shape == (height, width, 3)
    assert np.abs(out - ref[0].permute(1, 2, 0).numpy()).max() <= 1e-6
