"""libedgesr's upscale against the Python path (``open_runtime`` + ``Upscaler`` on the same
backend, model, tile and overlap, rounded as ``imageio`` writes): within 1/255 for 1-4 channels,
8 and 16 bit, padded strides, sizes that are not multiples of the tile, options, IRs, and one
session used from 4 threads at once."""

import ctypes
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image

from edgesr.kernels.blend import to_uint
from edgesr.pipeline import open_runtime
from edgesr.tiling import plan_tiles
from edgesr.upscaler import Upscaler

TOL = {8: 1, 16: 257}  # 1/255 in each bit depth


def make_image(rng, h: int, w: int, channels: int, bits: int) -> np.ndarray:
    """Synthetic HWC integer image; alpha (channels 2 and 4) has transparent and partial pixels."""
    img = smooth_image(rng, h, w, channels)
    if channels in (2, 4):
        alpha = np.clip(np.linspace(-0.3, 1.3, w, dtype=np.float32), 0, 1)
        img[..., -1] = alpha[None, :]
    peak = 255 if bits == 8 else 65535
    return np.rint(img * peak).astype(np.uint8 if bits == 8 else np.uint16)


def python_upscale(model: Path, image: np.ndarray, **upscaler) -> np.ndarray:
    """What ``edgesr upscale`` writes for ``image`` (integer HWC): the Python reference."""
    bits = 8 if image.dtype == np.uint8 else 16
    with open_runtime(str(model), "openvino") as runtime:
        out = Upscaler(runtime, **upscaler).upscale(
            image.astype(np.float32) / (255 if bits == 8 else 65535))
    out = to_uint(out, bits)
    return out[..., None] if out.ndim == 2 else out


def assert_close(c_out: np.ndarray, ref: np.ndarray, bits: int) -> None:
    assert c_out.shape == ref.shape
    diff = np.abs(c_out.astype(np.int64) - ref.astype(np.int64))
    worst = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= TOL[bits], f"max diff {diff.max()} at {worst}"


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("model", ["compact_x4", "rrdb_x2", "grey_x2"])
def test_matches_python_path(capi, onnx_models, rng, model, channels, bits):
    image = make_image(rng, 45, 70, channels, bits)  # 45x70: not multiples of the tile
    session = capi.session(onnx_models[model], "backend=openvino;tile=32;overlap=8;threads=1")
    try:
        status, out = capi.upscale(session, image, in_pad=3, out_pad=5)
        assert status == 0, capi.last_error()
    finally:
        capi.lib.edgesr_session_destroy(session)
    ref = python_upscale(onnx_models[model], image, tile=32, overlap=8)
    assert_close(out, ref, bits)


@pytest.mark.parametrize("options, upscaler", [
    ("tile=0", dict(tile=0)),
    ("tile=24;overlap=4;blend=linear", dict(tile=24, overlap=4, blend="linear")),
    ("tile=20;overlap=6;pad=replicate;batch=3", dict(tile=20, overlap=6, pad_mode="replicate",
                                                     batch=3)),
    ("tile=32;overlap=8;premultiply_alpha=0", dict(tile=32, overlap=8, premultiply_alpha=False)),
])
def test_options_match_python_path(capi, onnx_models, rng, options, upscaler):
    image = make_image(rng, 37, 51, 4, 8)
    session = capi.session(onnx_models["compact_x4"], options)
    try:
        status, out = capi.upscale(session, image)
        assert status == 0, capi.last_error()
    finally:
        capi.lib.edgesr_session_destroy(session)
    assert_close(out, python_upscale(onnx_models["compact_x4"], image, **upscaler), 8)


def test_opaque_alpha_stays_opaque(capi, onnx_models, rng):
    image = make_image(rng, 30, 33, 4, 8)
    image[..., 3] = 255
    session = capi.session(onnx_models["compact_x4"], "tile=16;overlap=4")
    try:
        status, out = capi.upscale(session, image)
    finally:
        capi.lib.edgesr_session_destroy(session)
    assert status == 0 and (out[..., 3] == 255).all()
    assert_close(out, python_upscale(onnx_models["compact_x4"], image, tile=16, overlap=4), 8)


def test_openvino_ir_matches_python_path(capi, onnx_models, rng, tmp_path):
    from edgesr.runtimes.openvino_runtime import build_ir

    xml = build_ir(onnx_models["rrdb_x2"], tmp_path / "model.xml")
    image = make_image(rng, 40, 27, 3, 8)
    session = capi.session(xml, "tile=16;overlap=4")
    try:
        assert capi.lib.edgesr_session_scale(session) == 2
        status, out = capi.upscale(session, image, in_pad=1)
        assert status == 0, capi.last_error()
    finally:
        capi.lib.edgesr_session_destroy(session)
    assert_close(out, python_upscale(xml, image, tile=16, overlap=4), 8)


@pytest.mark.parametrize("tile", [16, 0])  # 0: each image is one tile, of a shape of its own
def test_one_session_from_four_threads(capi, onnx_models, rng, tile):
    model = onnx_models["compact_x4"]
    images = [make_image(rng, 30 + 7 * i, 41 - 5 * i, 3 + (i % 2), 8) for i in range(4)]
    refs = [python_upscale(model, im, tile=tile, overlap=4) for im in images]
    session = capi.session(model, f"tile={tile};overlap=4;threads=1")
    results: list = [None] * 4
    start = threading.Barrier(4)

    def work(i: int) -> None:
        start.wait()
        for _ in range(3):  # several rounds, so the calls overlap
            results[i] = capi.upscale(session, images[i], out_pad=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        capi.lib.edgesr_session_destroy(session)
    for (status, out), ref in zip(results, refs, strict=True):
        assert status == 0
        assert_close(out, ref, 8)


PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int)


def test_progress_reports_every_batch_and_cancels(capi, onnx_models, rng):
    image = make_image(rng, 40, 40, 4, 8)  # RGBA: colour and alpha planes, 2 jobs per tile
    session = capi.session(onnx_models["compact_x4"], "tile=16;overlap=4;batch=2")
    calls = []
    counting = PROGRESS(lambda _, done, total: calls.append((done, total)) or 0)
    cancelling = PROGRESS(lambda _, done, total: 1)
    try:
        assert capi.lib.edgesr_session_set_progress(session, counting, None) == 0
        assert capi.upscale(session, image)[0] == 0
        assert capi.lib.edgesr_session_set_progress(session, cancelling, None) == 0
        status, _ = capi.upscale(session, image)
        message = capi.last_error()
        assert capi.lib.edgesr_session_set_progress(session, None, None) == 0
        assert capi.upscale(session, image)[0] == 0
    finally:
        capi.lib.edgesr_session_destroy(session)
    jobs = len(plan_tiles(40, 40, 16, 4)) * 2  # colour and alpha planes of every tile
    assert jobs == 18 and calls == [(done, jobs) for done in range(2, jobs + 1, 2)]
    assert status == 7 and f"cancelled by the progress callback after 2 of {jobs} tiles" in message


def test_fixed_shape_model_uses_its_own_tile(capi, rng, tmp_path):
    from conftest import tiny_descriptor

    from edgesr.export.onnx_export import export_onnx

    model = export_onnx(tiny_descriptor("compact_x2"), tmp_path / "fixed.onnx", check=False,
                        fixed_shape=(1, 16, 16)).path
    image = make_image(rng, 23, 35, 3, 8)
    session = capi.session(model, "tile=64;overlap=4")  # tile: ignored, the model fixes it
    try:
        status, out = capi.upscale(session, image)
        assert status == 0, capi.last_error()
    finally:
        capi.lib.edgesr_session_destroy(session)
    with open_runtime(str(model), "openvino", tile=(16, 16)) as runtime:
        ref = to_uint(Upscaler(runtime, overlap=4).upscale(image.astype(np.float32) / 255), 8)
    assert_close(out, ref, 8)


def test_model_without_edgesr_metadata_is_probed(capi, onnx_models, rng, tmp_path):
    import onnx

    proto = onnx.load(str(onnx_models["rrdb_x2"]))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    image = make_image(rng, 19, 26, 3, 8)
    session = capi.session(bare, "tile=16;overlap=4")
    try:
        assert capi.lib.edgesr_session_scale(session) == 2
        status, out = capi.upscale(session, image)
        assert status == 0, capi.last_error()
    finally:
        capi.lib.edgesr_session_destroy(session)
    assert_close(out, python_upscale(bare, image, tile=16, overlap=4), 8)


def test_tile_shapes_compiled_on_use_and_recompiled_after_eviction(capi, onnx_models, rng):
    """One session, whole-image tiles of 6 shapes (more than the 4 kept compiled), then the
    first shape again: every output equals the Python path's."""
    model = onnx_models["rrdb_x2"]
    sizes = [(10 + 2 * i, 14 - i) for i in range(6)] + [(10, 14)]
    session = capi.session(model, "tile=0")
    try:
        for h, w in sizes:
            image = make_image(rng, h, w, 3, 8)
            status, out = capi.upscale(session, image)
            assert status == 0, capi.last_error()
            assert_close(out, python_upscale(model, image, tile=0), 8)
    finally:
        capi.lib.edgesr_session_destroy(session)


@pytest.mark.parametrize("keep", [0, 1])
def test_new_tile_shape_reads_the_model_again_unless_kept(capi, onnx_models, rng, tmp_path,
                                                          keep):
    """The read model is dropped after a compile (keep_model=0): a new shape reads the file
    again, and says so clearly when it is gone; shapes already compiled need no file."""
    model = tmp_path / "model.onnx"
    shutil.copy(onnx_models["compact_x4"], model)
    first, second = make_image(rng, 12, 10, 3, 8), make_image(rng, 9, 11, 3, 8)
    session = capi.session(model, f"tile=0;keep_model={keep}")
    try:
        assert capi.upscale(session, first)[0] == 0
        model.unlink()
        status, out = capi.upscale(session, first)
        assert status == 0, capi.last_error()
        assert_close(out, python_upscale(onnx_models["compact_x4"], first, tile=0), 8)
        status, out = capi.upscale(session, second)
        message = capi.last_error()
    finally:
        capi.lib.edgesr_session_destroy(session)
    if keep:
        assert status == 0, message
        assert_close(out, python_upscale(onnx_models["compact_x4"], second, tile=0), 8)
    else:
        assert status == 3 and message == (
            f"{model}: removed or changed since the session was created, and a new tile shape "
            "(1x3x9x11) needs it (keep it in place, or create the session with keep_model=1)")


@pytest.mark.parametrize("model, batch", [("rrdb_x2", 2), ("grey_x2", 0)])
def test_infer_f32_is_the_engine_the_python_path_runs(capi, onnx_models, rng, model, batch):
    """edgesr_infer_f32 runs raw tiles (in rounds of the batch) as runtime.infer does."""
    with open_runtime(str(onnx_models[model]), "openvino") as runtime:
        channels, scale = runtime.info.in_channels, runtime.info.scale
        tiles = rng.random((5, channels, 12, 18), dtype=np.float32)
        ref = runtime.infer(tiles)
    session = capi.session(onnx_models[model], f"batch={batch}")
    out = np.full((5, channels, 12 * scale, 18 * scale), np.nan, np.float32)
    try:
        assert capi.lib.edgesr_session_channels(session) == channels
        status = capi.lib.edgesr_infer_f32(session, tiles.ctypes.data, 5, 12, 18,
                                           out.ctypes.data)
        assert status == 0, capi.last_error()
    finally:
        capi.lib.edgesr_session_destroy(session)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
