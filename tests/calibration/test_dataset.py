"""Calibration sets: reproducible, saved compactly, and readable by ORT, NNCF and batch loops."""

import numpy as np
import pytest
from onnxruntime.quantization import CalibrationDataReader
from PIL import Image

from edgesr.calibration import (
    CalibrationError,
    CalibrationSet,
    OrtCalibrationReader,
    build_calibration_set,
    evaluation_images,
)


@pytest.fixture(scope="module")
def calib() -> CalibrationSet:
    return build_calibration_set(count=5, tile=16, seed=7)


def test_synthetic_set_shapes_ranges_and_seed(calib):
    assert calib.images.shape == (5, 3, 16, 16) and calib.images.dtype == np.uint8
    assert calib.tile == (16, 16) and len(calib) == 5
    assert np.array_equal(calib.images, build_calibration_set(count=5, tile=16, seed=7).images)
    assert not np.array_equal(calib.images, build_calibration_set(count=5, tile=16, seed=8).images)
    sample = calib[0]
    assert sample.shape == (1, 3, 16, 16) and sample.dtype == np.float32
    assert 0.0 <= sample.min() and sample.max() <= 1.0


def test_set_from_folder(tmp_path, rng):
    for i in range(2):
        pixels = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "gray.png")
    calib = build_calibration_set(tmp_path, count=4, tile=16, seed=0)
    assert calib.images.shape == (4, 3, 16, 16) and calib.meta["source"] == str(tmp_path)
    held_out = evaluation_images(tmp_path, count=2, size=32)
    assert [im.shape for im in held_out] == [(32, 32, 3)] * 2


def test_save_load_roundtrip(tmp_path, calib):
    path = calib.save(tmp_path / "sub" / "calib.npz")
    loaded = CalibrationSet.load(path)
    assert np.array_equal(loaded.images, calib.images) and loaded.meta == calib.meta
    assert [p.name for p in path.parent.iterdir()] == ["calib.npz"]  # no temp file left
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(CalibrationError, match="not a calibration set"):
        CalibrationSet.load(tmp_path / "bad.npz")


def test_ort_reader_protocol(calib):
    reader = OrtCalibrationReader(calib, input_name="x", batch_size=2)
    assert isinstance(reader, CalibrationDataReader)
    first = [reader.get_next() for _ in range(4)]
    assert [None if f is None else f["x"].shape[0] for f in first] == [2, 2, 1, None]
    reader.rewind()
    assert np.array_equal(reader.get_next()["x"], first[0]["x"])
    reader.set_range(1, 3)
    assert np.array_equal(reader.get_next()["x"], calib.images[1:3] / np.float32(255))
    assert len(reader) == 5


def test_iterable_for_nncf_and_batches(calib):
    import nncf

    items = list(nncf.Dataset(calib).get_inference_data())
    assert len(items) == 5 and items[0].shape == (1, 3, 16, 16)
    batches = list(calib.batches(4))
    assert [b.shape[0] for b in batches] == [4, 1] and batches[0].flags.c_contiguous


def test_bad_arguments():
    with pytest.raises(CalibrationError):
        build_calibration_set(count=0)
    with pytest.raises(CalibrationError):
        CalibrationSet(np.zeros((0, 3, 8, 8), np.uint8))
