"""The README's "Use from C/C++" commands, run exactly as written from the repository root:
build and install libedgesr, build the example against the install (CMake package and
pkg-config), upscale a real image with a real model, and compare with `edgesr upscale`."""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from edgesr.cli import main

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use from C/C++", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_readme_c_commands_build_and_match_the_cli(tmp_path, require_lib):
    for tool in ("cmake", "cc", "pkg-config"):
        if shutil.which(tool) is None:
            require_lib(f"{tool} is not installed")
    if importlib.util.find_spec("openvino") is None:
        require_lib("libedgesr needs OpenVINO's C++ files: pip install openvino")
    if not (ROOT / ".venv" / "bin" / "python").exists():
        require_lib("the README's commands use the set-up's .venv, absent here")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_commands()], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "build/lowres_x4.ppm: 96x64 -> 384x256 (x4, libedgesr" in done.stdout

    build = ROOT / "build"
    c_out = np.asarray(Image.open(build / "lowres_x4.ppm"))
    again = tmp_path / "pc.ppm"
    subprocess.run([build / "edgesr_upscale_pc", build / "x4.onnx", build / "lowres.ppm", again,
                    "tile=64;overlap=16"], check=True, capture_output=True)
    assert np.array_equal(np.asarray(Image.open(again)), c_out)

    cli = tmp_path / "cli.png"
    assert main(["upscale", str(ROOT / "examples" / "lowres.png"), "-o", str(cli), "--model",
                 str(build / "x4.onnx"), "--backend", "openvino", "--tile", "64", "--overlap",
                 "16", "--quiet"]) == 0
    ref = np.asarray(Image.open(cli).convert("RGB")).astype(int)
    assert c_out.shape == ref.shape == (256, 384, 3)
    assert np.abs(c_out.astype(int) - ref).max() <= 1
