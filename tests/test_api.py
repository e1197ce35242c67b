"""edgesr.load / Session.upscale / edgesr.upscale_file: types in, same types out, threads."""

import threading

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image
from tiny_models import make_tiny

import edgesr
from edgesr.errors import EdgesrError, TilingError
from edgesr.kernels.blend import to_uint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "tiny_x2.pth"
    torch.save({"params": make_tiny("compact_x2").state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def session(checkpoint):
    with edgesr.load(checkpoint, backend="torch", tile=16, overlap=4) as sr:
        yield sr


def _reference(session, pixels: np.ndarray) -> np.ndarray:
    """The float path the typed calls must agree with."""
    return session.upscale(pixels.astype(np.float32))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_uint8_in_uint8_out(session, channels):
    rng = np.random.default_rng(channels)
    image = to_uint(smooth_image(rng, 20, 24, channels), 8)
    out = session.upscale(image)
    assert out.dtype == np.uint8 and out.shape == (40, 48, channels)
    expected = to_uint(_reference(session, image / np.float32(255)), 8)
    assert np.array_equal(out, expected)


def test_uint16_grey_hw_and_float(session):
    rng = np.random.default_rng(1)
    image = to_uint(smooth_image(rng, 18, 22, 1)[..., 0], 16)
    out = session.upscale(image)
    assert out.dtype == np.uint16 and out.shape == (36, 44)
    assert np.array_equal(out, to_uint(_reference(session, image / np.float32(65535)), 16))
    floats = session.upscale(image.astype(np.float64) / 65535)
    assert floats.dtype == np.float32 and floats.shape == (36, 44)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16", "P"])
def test_pil_images_keep_their_mode(session, mode):
    rng = np.random.default_rng(2)
    rgba = Image.fromarray(to_uint(smooth_image(rng, 12, 10, 4), 8), "RGBA")
    image = rgba.convert("RGB").convert("P") if mode == "P" else (
        rgba.convert("I;16") if mode == "I;16" else rgba.convert(mode))
    out = session.upscale(image)
    assert isinstance(out, Image.Image)
    assert out.mode == ("RGB" if mode == "P" else mode) and out.size == (20, 24)
    if mode == "RGB":
        assert np.array_equal(np.asarray(out), session.upscale(np.asarray(image)))


def test_outscale_and_bad_input(session):
    image = np.zeros((10, 10, 3), np.uint8)
    assert session.upscale(image, outscale=1.5).shape == (15, 15, 3)
    with pytest.raises(TilingError, match="int32"):
        session.upscale(image.astype(np.int32))
    with pytest.raises(TilingError, match="NumPy array or a PIL image"):
        session.upscale([[0, 1]])
    with pytest.raises(TilingError, match="NaN"):
        session.upscale(np.full((4, 4), np.nan, np.float32))


def test_eight_threads_match_serial(session):
    rng = np.random.default_rng(3)
    images = [to_uint(smooth_image(rng, 16 + i, 12 + i), 8) for i in range(8)]
    serial = [session.upscale(im) for im in images]
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for call in range(50):
                i = (t + call) % len(images)
                results[(t, call)] = session.upscale(images[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 400
    assert all(np.array_equal(out, serial[(t + c) % 8]) for (t, c), out in results.items())


def test_closed_session_refuses(checkpoint):
    sr = edgesr.load(checkpoint, backend="torch")
    sr.close()
    with pytest.raises(EdgesrError, match="closed"):
        sr.upscale(np.zeros((4, 4, 3), np.uint8))


def test_upscale_file(checkpoint, tmp_path):
    rng = np.random.default_rng(4)
    Image.fromarray(to_uint(smooth_image(rng, 14, 16), 8)).save(tmp_path / "in.png")
    written = edgesr.upscale_file(tmp_path / "in.png", tmp_path / "out.png", model=checkpoint)
    assert written == tmp_path / "out.png"
    assert Image.open(written).size == (32, 28)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_every_backend_agrees_and_is_thread_safe(backend, checkpoint, session, tmp_path,
                                                 monkeypatch):
    pytest.importorskip(backend)
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path))
    rng = np.random.default_rng(5)
    images = [to_uint(smooth_image(rng, 20, 18, c), 8) for c in (1, 3, 4)]
    with edgesr.load(checkpoint, backend=backend, tile=16, overlap=4) as sr:
        assert sr.backend == backend and sr.scale == 2
        serial = [sr.upscale(im) for im in images]
        for image, out in zip(images, serial, strict=True):
            reference = session.upscale(image).astype(int)
            assert np.abs(out.astype(int) - reference).max() <= 1
        outs: dict[tuple[int, int], np.ndarray] = {}

        def work(t: int) -> None:
            for call in range(10):
                outs[(t, call)] = sr.upscale(images[(t + call) % 3])

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(outs) == 80
    assert all(np.array_equal(out, serial[(t + c) % 3]) for (t, c), out in outs.items())
