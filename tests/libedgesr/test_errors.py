"""Bad inputs to libedgesr return a documented status and a one-line message, never crash:
NULL pointers, zero sizes, wrong channel counts, short strides, missing or corrupt models, bad
options, absent devices."""

import ctypes

import numpy as np
import pytest

ARGUMENT, OPTIONS, MODEL, BACKEND = 1, 2, 3, 4


@pytest.fixture(scope="module")
def session(capi, onnx_models):
    handle = capi.session(onnx_models["compact_x4"], "tile=16;overlap=4")
    yield handle
    capi.lib.edgesr_session_destroy(handle)


@pytest.mark.parametrize("options, status, message", [
    ("tile=abc", OPTIONS, "option tile=abc: expected an integer"),
    ("tile=-4", OPTIONS, "option tile=-4: expected an integer from 0"),
    ("colour=red", OPTIONS, "unknown option 'colour'; known: backend, batch, blend"),
    ("tile", OPTIONS, "option 'tile' is not key=value"),
    ("tile=32;tile=64", OPTIONS, "option 'tile' is given twice"),
    ("blend=box", OPTIONS, "option blend=box: choose from linear, cosine"),
    ("premultiply_alpha=maybe", OPTIONS, "expected 1 or 0"),
    ("tile=16;overlap=16", OPTIONS, "overlap 16 must be smaller than the tile size 16"),
    ("backend=tensorrt", BACKEND, "backend 'tensorrt' is not built into libedgesr; built: "
                                  "openvino"),
    ("device=NOSUCHDEVICE", BACKEND, "openvino: device 'NOSUCHDEVICE' not found; available: CPU"),
])
def test_bad_options(capi, onnx_models, options, status, message):
    got, handle = capi.create(onnx_models["compact_x4"], options)
    assert (got, handle.value) == (status, None)
    assert message in capi.last_error()


def test_options_tolerate_spaces_and_empty_pairs(capi, onnx_models):
    handle = capi.session(onnx_models["compact_x4"], " tile = 16 ; ;overlap=4; ")
    capi.lib.edgesr_session_destroy(handle)


def test_missing_and_corrupt_models(capi, onnx_models, tmp_path):
    assert capi.create(tmp_path / "absent.onnx")[0] == MODEL
    assert "absent.onnx: model file not found" in capi.last_error()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    assert capi.create(junk)[0] == MODEL
    assert "junk.onnx: OpenVINO cannot read it" in capi.last_error()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_models["rrdb_x2"].read_bytes()[:3000])
    assert capi.create(truncated)[0] == MODEL
    assert "truncated.onnx: OpenVINO cannot read it" in capi.last_error()
    weights = tmp_path / "model.pth"
    weights.write_bytes(b"\0" * 16)
    assert capi.create(weights)[0] == MODEL
    assert "expected an ONNX model (.onnx) or an OpenVINO IR" in capi.last_error()


def test_ir_without_its_bin(capi, onnx_models, tmp_path):
    from edgesr.runtimes.openvino_runtime import build_ir

    xml = build_ir(onnx_models["compact_x4"], tmp_path / "model.xml")
    xml.with_suffix(".bin").unlink()
    assert capi.create(xml)[0] == MODEL
    assert "model.xml: OpenVINO cannot read it" in capi.last_error()


def test_null_arguments(capi, onnx_models):
    assert capi.create(None)[0] == ARGUMENT
    assert "model_path is NULL" in capi.last_error()
    assert capi.lib.edgesr_session_create(str(onnx_models["compact_x4"]).encode(), None,
                                          None) == ARGUMENT
    assert capi.lib.edgesr_session_scale(None) == -1
    assert capi.lib.edgesr_session_set_progress(None, None, None) == ARGUMENT
    buf = np.zeros(64, np.uint8)
    assert capi.lib.edgesr_upscale_u8(None, buf.ctypes.data, 1, 1, 1, 1, buf.ctypes.data,
                                      8) == ARGUMENT
    assert capi.last_error() == "session is NULL"
    capi.lib.edgesr_session_destroy(None)


@pytest.mark.parametrize("width, height, channels, in_stride, message", [
    (0, 4, 3, 12, "image size must be positive, got 0x4"),
    (4, 0, 3, 12, "image size must be positive, got 4x0"),
    (4, 4, 0, 12, "channels must be 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), got 0"),
    (4, 4, 5, 20, "got 5"),
    (4, 4, 3, 11, "stride too small: in 11 bytes (rows need 12)"),
])
def test_bad_buffers(capi, session, width, height, channels, in_stride, message):
    buf = np.zeros(4096, np.uint8)
    status = capi.lib.edgesr_upscale_u8(session, buf.ctypes.data, width, height, channels,
                                        in_stride, buf.ctypes.data, 256)
    assert status == ARGUMENT and message in capi.last_error()


def test_null_pixels_and_short_output_stride(capi, session):
    buf = np.zeros(4096, np.uint8)
    for src, dst in ((None, buf.ctypes.data), (buf.ctypes.data, None)):
        assert capi.lib.edgesr_upscale_u8(session, src, 4, 4, 3, 12, dst, 48) == ARGUMENT
        assert "in or out is NULL" in capi.last_error()
    assert capi.lib.edgesr_upscale_u8(session, buf.ctypes.data, 4, 4, 3, 12, buf.ctypes.data,
                                      47) == ARGUMENT
    assert "out 47 (rows need 48)" in capi.last_error()
    odd = ctypes.c_void_p(buf.ctypes.data + 1)
    assert capi.lib.edgesr_upscale_u16(session, odd, 4, 4, 3, 24, buf.ctypes.data, 96) == ARGUMENT
    assert "2-byte aligned" in capi.last_error()


def test_error_then_success_clears_the_message(capi, session, rng):
    image = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    assert capi.upscale(session, image, scale=4)[0] == 0
    assert capi.last_error() == ""


def test_model_that_is_not_an_upscaler(capi, tmp_path):
    """A valid ONNX model turning 3 channels into 1: a status and a message, no session."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [0.3, 0.3, 0.4])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "to_grey",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, "h", "w"])], [weight])
    path = tmp_path / "to_grey.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    status, handle = capi.create(path)
    assert (status, handle.value) == (MODEL, None)
    assert "models with 3 input and 1 output channels are not supported" in capi.last_error()


def test_infer_f32_bad_arguments(capi, onnx_models):
    buf = np.zeros(3 * 16 * 16 * 4 * 4, np.float32)
    p = buf.ctypes.data
    session = capi.session(onnx_models["rrdb_x2"], "")  # size multiple 2
    try:
        for args, message in (((None, 1, 8, 8, p), "infer: in or out is NULL"),
                              ((p, 0, 8, 8, p), "count, height and width must be positive"),
                              ((p, 1, 8, 7, p), "multiples of 2, got 8x7")):
            assert capi.lib.edgesr_infer_f32(session, *args) == ARGUMENT
            assert message in capi.last_error()
    finally:
        capi.lib.edgesr_session_destroy(session)
    assert capi.lib.edgesr_infer_f32(None, p, 1, 8, 8, p) == ARGUMENT
    assert capi.lib.edgesr_session_channels(None) == -1


def test_infer_f32_on_a_fixed_shape_model_takes_its_shape_only(capi, tmp_path):
    from conftest import tiny_descriptor

    from edgesr.export.onnx_export import export_onnx

    model = export_onnx(tiny_descriptor("compact_x2"), tmp_path / "fixed.onnx", check=False,
                        fixed_shape=(1, 16, 16)).path
    tile, out = np.zeros((3, 16, 16), np.float32), np.zeros((3, 32, 32), np.float32)
    session = capi.session(model, "overlap=4")
    try:
        assert capi.lib.edgesr_infer_f32(session, tile.ctypes.data, 1, 16, 16,
                                         out.ctypes.data) == 0
        assert capi.lib.edgesr_infer_f32(session, tile.ctypes.data, 1, 8, 8,
                                         out.ctypes.data) == ARGUMENT
        assert "the model takes 16x16 inputs only, got 8x8" in capi.last_error()
    finally:
        capi.lib.edgesr_session_destroy(session)
