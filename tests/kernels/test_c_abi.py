"""The C ABI from C: CMake builds the C test programs into a temporary dir and runs them.

libedgesr is left out here (tests/libedgesr builds it). The CUDA program is built when CMake
finds nvcc and a CUDA toolkit and run when a GPU is present; otherwise its test skips, saying
which is missing.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    build = tmp_path_factory.mktemp("cmake")
    for command in (["cmake", "-S", ROOT, "-B", build, "-DEDGESR_PYTHON=OFF",
                     "-DEDGESR_LIB=OFF"],
                    ["cmake", "--build", build, "--parallel", "2"]):
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return build


def test_c_program_passes_under_ctest(build_dir):
    done = subprocess.run(["ctest", "--test-dir", build_dir, "-R", "^c_abi$",
                           "--output-on-failure"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "100% tests passed, 0 tests failed out of 1" in done.stdout


def test_cuda_kernels_match_cpp(build_dir):
    program = build_dir / "edgesr_blend_cuda_test"
    if not program.exists():
        pytest.skip("CUDA kernels not built: CMake found no nvcc or CUDA toolkit")
    done = subprocess.run([program], capture_output=True, text=True)
    if done.returncode == 77:
        pytest.skip(f"CUDA kernels built but not run: {done.stdout.strip()}")
    assert done.returncode == 0, done.stdout + done.stderr
