"""``edgesr upscale``: streaming by default, naming and format flags, --tta, --json, progress."""

import json
import os
import re
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image, ImageCms
from tiny_models import make_tiny, make_tiny_denoiser

from edgesr.cli import main
from edgesr.imageio import read_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny_x2.pth"
    torch.save({"params": make_tiny("compact_x2").state_dict()}, path)
    return path


def _png(path, rng, h=20, w=24, alpha=False, **save):
    pixels = (smooth_image(rng, h, w) * 255).astype(np.uint8)
    if alpha:
        a = np.full((h, w, 1), 255, np.uint8)
        a[::4] = 0
        pixels = np.concatenate([pixels, a], axis=2)
    Image.fromarray(pixels).save(path, **save)
    return path


def _upscale(*args) -> int:
    return main(["upscale", *map(str, args)])


@pytest.mark.parametrize("out, alpha", [("o.png", False), ("o.png", True), ("o.tif", False),
                                        ("o.tif", True)])
def test_default_streams_and_equals_the_in_memory_upscale(tmp_path, checkpoint, rng, out, alpha,
                                                          monkeypatch):
    from edgesr import pipeline

    seen = []
    real = pipeline._stream_to
    monkeypatch.setattr(pipeline, "_stream_to", lambda *a: seen.append(a[3]) or real(*a))
    src = _png(tmp_path / "in.png", rng, 37, 29, alpha)
    common = ["-m", checkpoint, "--tile", "16", "--overlap", "4", "-q"]
    assert _upscale(src, "-o", tmp_path / out, *common) == 0
    assert seen == [tmp_path / out]  # streamed
    assert _upscale(src, "-o", tmp_path / f"whole{out}", "--no-stream", *common) == 0
    assert seen == [tmp_path / out]  # not streamed
    got, want = read_image(tmp_path / out), read_image(tmp_path / f"whole{out}")
    assert got.pixels.shape == (74, 58, 4 if alpha else 3)
    np.testing.assert_array_equal(got.pixels, want.pixels)


def test_stream_keeps_icc_dpi_and_exif(tmp_path, checkpoint, rng):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "EdgeCam"  # Make
    src = _png(tmp_path / "in.png", rng, icc_profile=icc, dpi=(100, 100), exif=exif)
    for name, extra in (("s.png", []), ("w.png", ["--no-stream"])):
        assert _upscale(src, "-o", tmp_path / name, "-m", checkpoint, "-q", *extra) == 0
    streamed, whole = Image.open(tmp_path / "s.png"), Image.open(tmp_path / "w.png")
    assert streamed.info["icc_profile"] == whole.info["icc_profile"] == icc
    assert streamed.info["dpi"] == pytest.approx(whole.info["dpi"], abs=0.05)
    assert streamed.info["dpi"] == pytest.approx((200, 200), abs=0.05)
    assert streamed.getexif()[0x010F] == whole.getexif()[0x010F] == "EdgeCam"


def test_what_cannot_stream_says_why_and_how_much_memory(tmp_path, checkpoint, rng, capsys):
    src = _png(tmp_path / "in.png", rng)
    assert _upscale(src, "-o", tmp_path / "o.jpg", "-m", checkpoint) == 0
    err = capsys.readouterr().err
    assert "in.png: not streamed: JPG output is encoded from the whole image" in err
    assert re.search(r"upscaling it in memory takes about \d+ MB$", err, re.M), err
    assert _upscale(src, "-o", tmp_path / "r.png", "-s", "3", "-m", checkpoint) == 0
    assert "not streamed: --outscale resizes the whole image" in capsys.readouterr().err
    assert _upscale(src, "-o", tmp_path / "n.png", "-s", "2", "-m", checkpoint) == 0
    assert "not streamed" not in capsys.readouterr().err  # -s at the model's own scale streams
    code = _upscale(src, "-o", tmp_path / "r2.png", "-s", "3", "--stream", "-m", checkpoint,
                    "-q")
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "--outscale resizes the whole image" in err


def test_suffix_format_and_quality(tmp_path, checkpoint, rng, capsys):
    src = _png(tmp_path / "photo.png", rng)
    assert _upscale(src, "-m", checkpoint, "-q") == 0  # today's naming stays the default
    assert (tmp_path / "photo_x2.png").is_file()
    assert _upscale(src, "--suffix", "out", "-f", "jpg", "--quality", "40", "-m", checkpoint,
                    "-q") == 0
    low = tmp_path / "photo_out.jpg"
    assert Image.open(low).format == "JPEG"
    assert _upscale(src, "--suffix", "hi", "-f", "jpg", "-m", checkpoint, "-q") == 0
    assert low.stat().st_size < (tmp_path / "photo_hi.jpg").stat().st_size  # default 95
    folder = tmp_path / "folder"
    folder.mkdir()
    _png(folder / "a.png", rng)
    assert _upscale(folder, "-o", tmp_path / "out", "--suffix", "sr", "-f", "webp", "-m",
                    checkpoint, "-q") == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a_sr.webp"]
    capsys.readouterr()


def test_format_choices_are_the_extensions_edgesr_writes():
    from edgesr.commands.upscale import FORMATS
    from edgesr.imageio import IMAGE_EXTENSIONS

    assert FORMATS == tuple(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)


@pytest.mark.parametrize("args, message", [
    (["--quality", "0", "-f", "jpg"], "--quality 0: a number from 1 to 100"),
    (["--quality", "80"], "--quality is for JPEG, WebP, AVIF and HEIC output"),
    (["-f", "jpg", "-o", "{tmp}/o.png"], "is not JPG, as --format jpg asks"),
    (["-f", "jpg", "--ext", ".png"], "--ext .png and --format jpg disagree"),
    (["--suffix", "a/b"], "--suffix 'a/b': a name suffix"),
    (["--suffix", "s", "-o", "{tmp}/o.png"], "--suffix names the outputs edgesr names"),
    (["--suffix", ""], "would overwrite the input"),
])
def test_bad_values_are_one_line(tmp_path, checkpoint, rng, capsys, args, message):
    src = _png(tmp_path / "in.png", rng)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert _upscale(src, "-m", checkpoint, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgesr: error:") and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_tta_is_refused_for_diffusion_models(tmp_path, rng, capsys):
    model = tmp_path / "sr3.pth"
    torch.save(make_tiny_denoiser("sr3").state_dict(), model)
    src = _png(tmp_path / "in.png", rng, 16, 16)
    assert _upscale(src, "-m", model, "--tta", "-q") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tta averages 8 runs of a feed-forward model" in err


def test_tta_runs_and_changes_a_random_model(tmp_path, checkpoint, rng):
    src = _png(tmp_path / "in.png", rng)
    for name, extra in (("plain.png", []), ("tta.png", ["--tta"]), ("x.png", ["-x"])):
        assert _upscale(src, "-o", tmp_path / name, "-m", checkpoint, "-q", "--tile", "16",
                        "--overlap", "4", *extra) == 0
    plain, tta, x = (np.asarray(Image.open(tmp_path / n)) for n in ("plain.png", "tta.png",
                                                                    "x.png"))
    assert np.array_equal(tta, x) and not np.array_equal(plain, tta)


def test_json_is_one_document_on_stdout(tmp_path, checkpoint, rng, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _png(folder / "a.png", rng, 20, 24)
    (folder / "bad.png").write_bytes(b"not an image")
    code = _upscale(folder, "-o", tmp_path / "out", "-m", checkpoint, "--json", "-b",
                    "onnxruntime")
    captured = capsys.readouterr()
    assert code == 1
    report = json.loads(captured.out)
    assert report["backend"] == "onnxruntime" and report["precision"] == "fp32"
    assert report["failed"] == 1
    good, bad = report["files"]
    assert good["source"].endswith("a.png") and good["target"].endswith("a.png")
    assert good["size_in"] == {"width": 24, "height": 20}
    assert good["size_out"] == {"width": 48, "height": 40}
    assert good["streamed"] is True and good["error"] is None and good["seconds"] > 0
    assert good["backend"] == "onnxruntime" and good["model"].endswith("tiny_x2.pth")
    assert good["model_file"].endswith(".onnx")  # the checkpoint's export ran
    assert bad["target"] is None and "not an image" in bad["error"]
    assert "a.png ->" in captured.err  # human lines moved to stderr


def test_json_reports_an_error_before_any_file(tmp_path, rng, capsys):
    src = _png(tmp_path / "in.png", rng)
    assert _upscale(src, "-m", tmp_path / "missing.pth", "--json") == 1
    captured = capsys.readouterr()
    assert "model file not found" in json.loads(captured.out)["error"]
    assert captured.err.startswith("edgesr: error:")


def test_progress_off_a_terminal_is_plain_lines(tmp_path, checkpoint, rng):
    """stderr is a pipe here: the tile and folder progress are whole lines, no \\r or escapes."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _png(folder / name, rng, 24, 40)
    done = subprocess.run([sys.executable, "-m", "edgesr.cli", "upscale", str(folder), "-o",
                           str(tmp_path / "out"), "-m", str(checkpoint), "--tile", "16",
                           "--overlap", "4"], capture_output=True, text=True,
                          env={**os.environ, "EDGESR_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    lines = done.stderr.splitlines()
    assert "edgesr: images 3/3 (100%)" in lines
    assert any(line.startswith("edgesr: tiles ") for line in lines)


# A 3072x3072 random RGB PNG upscaled x4 with default options (12288x12288 out): the process's
# peak RSS (VmHWM), torch imported first as the tiny checkpoint runs on it.
_BIG_RUN = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch
    from PIL import Image
    from edgesr.cli import main
    from edgesr.profiling.timing import own_peak_rss_mb

    src, model, out = sys.argv[1:4]
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (3072, 3072, 3), np.uint8)).save(
        src, compress_level=1)
    code = main(["upscale", src, "-m", model, "-o", out, "-q"])
    print(json.dumps({"code": code, "peak_mb": own_peak_rss_mb()}))
""")


def test_default_run_of_a_3072_image_peaks_under_1_5_gb(tmp_path):
    model = tmp_path / "compact_x4.pth"
    torch.save({"params": make_tiny("compact_x4").state_dict()}, model)
    out = tmp_path / "big_x4.png"
    done = subprocess.run([sys.executable, "-c", _BIG_RUN, str(tmp_path / "big.png"), str(model),
                           str(out)], capture_output=True, text=True,
                          env={**os.environ, "EDGESR_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0, done.stderr
    assert result["peak_mb"] * 2**20 <= 1.5e9, result
    with open(out, "rb") as png:  # the IHDR's size (Pillow would warn of a decompression bomb)
        assert struct.unpack(">II", png.read(24)[16:]) == (12288, 12288)
