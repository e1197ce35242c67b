"""libedgesr's C test program (libedgesr/ctest/test_edgesr.c) under ctest, on a tiny model."""

import os
import subprocess


def test_c_program_passes_under_ctest(build_dir, onnx_models, tmp_path):
    env = {**os.environ, "EDGESR_TEST_MODEL": str(onnx_models["compact_x4"]),
           "TMPDIR": str(tmp_path)}
    done = subprocess.run(["ctest", "--test-dir", build_dir, "-R", "^libedgesr_c$",
                           "--output-on-failure"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "100% tests passed, 0 tests failed out of 1" in done.stdout
