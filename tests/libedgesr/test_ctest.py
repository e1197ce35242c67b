"""libedgesr's C programs: the test program (libedgesr/ctest/test_edgesr.c) under ctest, and the
example (examples/c/edgesr_upscale.c) against the Python path, on a tiny model."""

import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from edgesr.kernels.blend import to_uint
from edgesr.pipeline import open_runtime
from edgesr.upscaler import Upscaler


def test_c_program_passes_under_ctest(build_dir, onnx_models, tmp_path):
    env = {**os.environ, "EDGESR_TEST_MODEL": str(onnx_models["compact_x4"]),
           "TMPDIR": str(tmp_path)}
    done = subprocess.run(["ctest", "--test-dir", build_dir, "-R", "^libedgesr_c$",
                           "--output-on-failure"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "100% tests passed, 0 tests failed out of 1" in done.stdout


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("L", 1)])
def test_example_program_matches_python_path(build_dir, onnx_models, rng, tmp_path, mode,
                                             channels):
    """examples/c/edgesr_upscale.c, built in-tree, on a PPM (RGB) or PGM (grey) image."""
    image = rng.integers(0, 256, (21, 34, channels), dtype=np.uint8)
    source, target = tmp_path / "in.pnm", tmp_path / "out.pnm"
    Image.fromarray(image[..., 0] if channels == 1 else image, mode).save(source)
    done = subprocess.run([build_dir / "libedgesr" / "edgesr_upscale_example",
                           onnx_models["compact_x4"], source, target, "tile=16;overlap=4"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "out.pnm: 34x21 -> 136x84 (x4, libedgesr 0.1.0)" in done.stdout
    with open_runtime(str(onnx_models["compact_x4"]), "openvino") as runtime:
        ref = to_uint(Upscaler(runtime, tile=16, overlap=4).upscale(image / np.float32(255)), 8)
    out = np.asarray(Image.open(target)).reshape(ref.shape)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_example_program_reports_bad_input(build_dir, onnx_models, tmp_path):
    program = build_dir / "libedgesr" / "edgesr_upscale_example"
    assert subprocess.run([program], capture_output=True).returncode == 2
    junk = tmp_path / "junk.ppm"
    junk.write_bytes(b"P3\n1 1\n255\n0 0 0\n")  # ASCII PPM: not supported
    done = subprocess.run([program, onnx_models["compact_x4"], junk, tmp_path / "o.ppm"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "not an 8-bit binary PPM (P6) or PGM (P5)" in done.stderr
    good = tmp_path / "good.ppm"
    Image.new("RGB", (4, 4)).save(good)
    done = subprocess.run([program, tmp_path / "absent.onnx", good, tmp_path / "o.ppm"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "libedgesr: " in done.stderr and "not found" in done.stderr
    assert not (tmp_path / "o.ppm").exists()
