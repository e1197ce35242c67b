"""libedgesr from Python: one CMake build per test session, the library through ctypes, and
tiny real-architecture models exported to ONNX.

When the ``openvino`` package is importable the build must produce libedgesr (EDGESR_LIB=ON), so
a broken build fails instead of skipping; without it (or without cmake) the tests skip, saying
why, unless ``EDGESR_REQUIRE_LIB=1`` (CI) turns every such skip into a failure.
"""

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def cmake_build(build: Path, *extra: str) -> subprocess.CompletedProcess:
    """Configure and build the root CMakeLists.txt into ``build`` (no Python module, no CUDA)."""
    configure = ["cmake", "-S", ROOT, "-B", build, "-DEDGESR_PYTHON=OFF", "-DEDGESR_CUDA=OFF",
                 f"-DPython_EXECUTABLE={sys.executable}", *extra]
    done = subprocess.run(configure, capture_output=True, text=True)
    if done.returncode == 0:
        done = subprocess.run(["cmake", "--build", build, "--parallel", "2"],
                              capture_output=True, text=True)
    return done


def skip_unless_required(reason: str) -> None:
    """Skip with ``reason``, or fail with it when EDGESR_REQUIRE_LIB=1."""
    if os.environ.get("EDGESR_REQUIRE_LIB") == "1":
        pytest.fail(f"EDGESR_REQUIRE_LIB=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def require_lib():
    """skip_unless_required, for tests outside this module."""
    return skip_unless_required


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    for tool in ("cmake", "ctest"):
        if shutil.which(tool) is None:
            skip_unless_required(f"{tool} is not installed")
    if importlib.util.find_spec("openvino") is None:
        skip_unless_required("libedgesr needs OpenVINO's C++ files: pip install openvino")
    build = tmp_path_factory.mktemp("libedgesr_build")
    done = cmake_build(build, "-DEDGESR_LIB=ON")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return build


class CApi:
    """include/edgesr.h through ctypes; images are HWC uint8/uint16 NumPy arrays."""

    def __init__(self, path: Path):
        self.lib = lib = ctypes.CDLL(str(path))
        session_p = ctypes.POINTER(ctypes.c_void_p)
        for name, res, args in (
                ("edgesr_version", ctypes.c_char_p, []),
                ("edgesr_last_error", ctypes.c_char_p, [ctypes.c_void_p]),
                ("edgesr_session_create", ctypes.c_int,
                 [ctypes.c_char_p, ctypes.c_char_p, session_p]),
                ("edgesr_session_destroy", None, [ctypes.c_void_p]),
                ("edgesr_session_scale", ctypes.c_int, [ctypes.c_void_p]),
                ("edgesr_session_channels", ctypes.c_int, [ctypes.c_void_p]),
                ("edgesr_infer_f32", ctypes.c_int,
                 [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_void_p]),
                ("edgesr_session_set_progress", ctypes.c_int,
                 [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p])):
            getattr(lib, name).restype = res
            getattr(lib, name).argtypes = args
        for name in ("edgesr_upscale_u8", "edgesr_upscale_u16"):
            getattr(lib, name).restype = ctypes.c_int
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                           ctypes.c_int, ctypes.c_int, ctypes.c_size_t,
                                           ctypes.c_void_p, ctypes.c_size_t]

    def last_error(self) -> str:
        return self.lib.edgesr_last_error(None).decode()

    def create(self, model, options: str | None = "") -> tuple[int, ctypes.c_void_p]:
        session = ctypes.c_void_p()
        status = self.lib.edgesr_session_create(
            None if model is None else str(model).encode(),
            None if options is None else options.encode(), ctypes.byref(session))
        return status, session

    def session(self, model, options: str = "") -> ctypes.c_void_p:
        status, session = self.create(model, options)
        assert status == 0, self.last_error()
        return session

    def upscale(self, session, image: np.ndarray, *, in_pad: int = 0, out_pad: int = 0,
                scale: int | None = None) -> tuple[int, np.ndarray]:
        """Upscale ``image`` (HW or HWC) from a buffer with ``in_pad`` extra samples per row
        into one with ``out_pad`` (filled with a sentinel that must survive); return (status,
        HWC output)."""
        pixels = image[..., None] if image.ndim == 2 else image
        h, w, c = pixels.shape
        s = self.lib.edgesr_session_scale(session) if scale is None else scale
        src = np.zeros((h, w * c + in_pad), image.dtype)
        src[:, :w * c] = pixels.reshape(h, w * c)
        dst = np.full((h * s, w * s * c + out_pad), 173, image.dtype)
        fn = self.lib.edgesr_upscale_u8 if image.dtype == np.uint8 else self.lib.edgesr_upscale_u16
        status = fn(session, src.ctypes.data, w, h, c, src.strides[0], dst.ctypes.data,
                    dst.strides[0])
        if status == 0:
            assert (dst[:, w * s * c:] == 173).all(), "row padding of the output was written"
        return status, np.ascontiguousarray(dst[:, :w * s * c]).reshape(h * s, w * s, c)


@pytest.fixture(scope="session")
def capi(build_dir) -> CApi:
    return CApi(build_dir / "libedgesr" / "libedgesr.so")


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny real-architecture models as edgesr ONNX files: compact x4 and RRDB x2 (3 channels,
    from tests/tiny_models.py) and a 1-channel compact x2."""
    import torch
    from conftest import tiny_descriptor

    from edgesr.export.onnx_export import export_onnx
    from edgesr.models import model_from_state_dict
    from edgesr.models.compact import SRVGGNetCompact

    folder = tmp_path_factory.mktemp("libedgesr_models")
    torch.manual_seed(0)
    grey = SRVGGNetCompact(1, 1, num_feat=8, num_conv=2, upscale=2).eval()
    descriptors = {"compact_x4": tiny_descriptor("compact_x4"),
                   "rrdb_x2": tiny_descriptor("rrdb_x2"),
                   "grey_x2": model_from_state_dict(grey.state_dict())}
    paths = {}
    for name, desc in descriptors.items():
        paths[name] = export_onnx(desc, folder / f"{name}.onnx", check=False).path
    return paths
