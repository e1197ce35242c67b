"""Adds the native blend kernels (edgesr.kernels._blend_native), built by driving CMakeLists.txt.

Project metadata lives in pyproject.toml; this file only declares the extension. It is optional:
without a C++ compiler the install goes on and edgesr uses the NumPy kernels, with a warning
(``EDGESR_REQUIRE_NATIVE=1`` turns a failed build into an error). ``EDGESR_CMAKE_ARGS`` adds
arguments to the CMake configure step. libedgesr, the C library, is not part of the Python
package: CMake builds and installs it directly (README, "Use from C/C++").
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    """An extension whose sources CMake compiles: setuptools only places the result."""

    def __init__(self, name: str):
        super().__init__(name, sources=[], optional=os.environ.get("EDGESR_REQUIRE_NATIVE") != "1")


class CMakeBuild(build_ext):
    """Configure and build one CMake target into the directory setuptools expects."""

    def build_extension(self, ext: CMakeExtension) -> None:
        try:
            import pybind11  # a build requirement (pyproject.toml)
        except ImportError as exc:
            raise CompileError(f"{ext.name} needs pybind11 to build: {exc}") from exc
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        configure = ["cmake", "-S", str(ROOT), "-B", str(build_dir),
                     "-DCMAKE_BUILD_TYPE=Release", "-DEDGESR_TESTS=OFF", "-DEDGESR_CUDA=OFF",
                     "-DEDGESR_LIB=OFF",
                     f"-DPython_EXECUTABLE={sys.executable}",
                     f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                     f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
                     *shlex.split(os.environ.get("EDGESR_CMAKE_ARGS", ""))]
        build = ["cmake", "--build", str(build_dir), "--target", ext.name.rsplit(".", 1)[-1],
                 "--parallel", str(os.cpu_count() or 1)]
        try:
            for command in (configure, build):
                subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise CompileError(f"CMake build of {ext.name} failed: {exc}") from exc


setup(ext_modules=[CMakeExtension("edgesr.kernels._blend_native")],
      cmdclass={"build_ext": CMakeBuild})
