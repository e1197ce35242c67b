"""The lean install (no PyTorch): running a .onnx model, from the CLI and from ``edgesr.load``,
and the bundled default model, in a child process where ``import torch`` fails as it does when
torch is not installed; torch is never imported. Also the README's Install section and the
extras it names."""

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgesr
from edgesr.export.ncnn_onnx import CONVERTER_VERSION

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Put first on PYTHONPATH: every import of torch (or a submodule) fails.
BLOCKER = '''
import sys


class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
'''


def run_without_torch(tmp_path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python whose torch imports fail; EDGESR_CACHE under tmp_path."""
    site = tmp_path / "no_torch"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(site), "EDGESR_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def onnx_model(exported):
    return exported("compact_x2")[1]


def test_the_blocker_blocks(tmp_path):
    run = run_without_torch(tmp_path, "import torch")
    assert run.returncode != 0 and "ModuleNotFoundError: No module named 'torch'" in run.stderr


def test_cli_and_api_run_an_onnx_model_without_torch(tmp_path, onnx_model, rng):
    pixels = (rng.random((12, 10, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    code = f"""
import json, sys
import numpy as np
import edgesr
from edgesr.export.ncnn_onnx import CONVERTER_VERSION
from edgesr.cli import main

code = main(["upscale", {str(tmp_path / "in.png")!r}, "-o", {str(tmp_path / "cli.png")!r},
             "-m", {str(onnx_model)!r}, "-q", "--tile", "8", "--overlap", "2"])
with edgesr.load({str(onnx_model)!r}, tile=8, overlap=2) as sr:
    image = np.load({str(tmp_path / "in.npy")!r})
    np.save({str(tmp_path / "api.npy")!r}, sr.upscale(image))
    np.save({str(tmp_path / "api3.npy")!r}, sr.upscale(image, outscale=3))
print(json.dumps({{"code": code, "torch": "torch" in sys.modules}}))
"""
    np.save(tmp_path / "in.npy", pixels)
    run = run_without_torch(tmp_path, code)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == {"code": 0, "torch": False}
    with edgesr.load(onnx_model, tile=8, overlap=2) as sr:  # here, torch importable
        expected, expected3 = sr.upscale(pixels), sr.upscale(pixels, outscale=3)
    assert np.array_equal(np.load(tmp_path / "api3.npy"), expected3)
    assert np.array_equal(np.load(tmp_path / "api.npy"), expected)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli.png")), expected)


def test_default_model_runs_without_torch(tmp_path, rng):
    """The bundled ncnn model converts to ONNX without PyTorch and runs on the fastest exact
    backend installed: OpenVINO if present, else ONNX Runtime (the lean install's)."""
    pixels = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    code = f"""
import json, sys
from edgesr.cli import main

code = main(["upscale", {str(tmp_path / "in.png")!r}, "-o", {str(tmp_path / "out.png")!r},
             "--tile", "0"])
print(json.dumps({{"code": code, "torch": "torch" in sys.modules}}))
"""
    run = run_without_torch(tmp_path, code)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == {"code": 0, "torch": False}
    ran = "openvino on CPU" if importlib.util.find_spec("openvino") else "onnxruntime on cpu"
    assert f"edgesr: {ran} at fp32" in run.stderr and f"-ncnn{CONVERTER_VERSION}.onnx" in run.stderr
    assert Image.open(tmp_path / "out.png").size == (32, 32)
    cached = list((tmp_path / "cache" / "onnx").iterdir())
    assert len(cached) == 1 and cached[0].name.endswith(f"-ncnn{CONVERTER_VERSION}.onnx")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_readme_install_commands_name_real_extras():
    """The README's Install commands (pip reaches no index at test time: the lean install in a
    fresh venv is measured by hand, see the README) name the package and extras it defines."""
    project = _pyproject()["project"]
    section = README.read_text().split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].strip()
                for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
                for line in block.splitlines() if line.strip()]
    assert commands and commands[0] == "pip install edgesr"
    for command in commands:
        words = shlex.split(command)
        name, _, extras = words[2].partition("[")
        assert words[:2] == ["pip", "install"] and name == project["name"], command
        for extra in filter(None, extras.rstrip("]").split(",")):
            assert extra in project["optional-dependencies"], command


def test_torch_is_an_extra_pinned_exactly():
    project = _pyproject()["project"]
    assert not [r for r in project["dependencies"] if re.match(r"(torch|matplotlib)\b", r)]
    listed = [r for reqs in project["optional-dependencies"].values() for r in reqs
              if re.match(r"torch\b", r)]
    assert listed == ["torch==2.13.0"]
    extras = project["optional-dependencies"]
    assert "edgesr[all]" in extras["test"]
    assert extras["ray"] == ["edgesr[cluster]"]  # the cluster extra's former name
    assert set(re.findall(r"\w+", extras["all"][0].partition("[")[2])) == \
        set(extras) - {"all", "test", "tensorrt", "ray"}
