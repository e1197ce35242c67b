"""Every command and Python example the README shows runs as written.

The README's shell blocks are read, each command is run in order in a workspace that holds the
files the commands name (small synthetic photos, tiny checkpoints under the README's file names,
a tiny Stable Diffusion x4 folder), with the installed ``edgesr``; later commands use what earlier
ones wrote, as a reader following the README would. The set-up commands (venv + install, the test
suite) are run by CI (.ci/run), which this test checks. Commands that are neither edgesr commands
nor set-up belong in a section that a dedicated test runs (``ELSEWHERE``).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image
from tiny_models import make_tiny, make_tiny_denoiser, write_tiny_sd_x4

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Commands CI runs itself (.ci/run must contain them as written).
SETUP = ("python3 -m venv .venv && .venv/bin/pip install -e '.[test]'",
         ".venv/bin/python -m pytest")
#: README sections whose shell blocks a dedicated test runs as written: heading -> that test.
ELSEWHERE = {"Use from C/C++": "tests/libedgesr/test_readme_example.py",
             "Install": "tests/test_lean_install.py"}


def _sections() -> list[tuple[str, str]]:
    """(heading, text) of each ``## `` section of the README."""
    parts = re.split(r"^## (.+)$", README.read_text(), flags=re.M)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def readme_commands() -> list[str]:
    """The commands of the README's ``bash`` blocks, in order, comments stripped, continuation
    lines joined; blocks of the sections in ``ELSEWHERE`` are left to their tests."""
    commands = []
    for heading, text in _sections():
        if heading in ELSEWHERE:
            continue
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words:
                    commands.append(line.split(" #")[0].strip() if "&&" in line
                                    else shlex.join(words))
    return commands


def test_sections_left_to_other_tests_are_run_there():
    headings = [heading for heading, _ in _sections()]
    for heading, test in ELSEWHERE.items():
        assert heading in headings, f"README has no section {heading!r}"
        assert heading in (ROOT / test).read_text(), f"{test} does not run {heading!r}"


def readme_python() -> list[str]:
    """The README's ``python`` blocks."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_ci_runs_the_setup_commands_first():
    commands = readme_commands()
    assert tuple(commands[:2]) == SETUP
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]'" in ci and "-m pytest" in ci


def _workspace(folder: Path) -> None:
    """The files the README's commands name, small and synthetic."""
    rng = np.random.default_rng(0)

    def save(path: Path, h: int, w: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((smooth_image(rng, h, w) * 255).astype(np.uint8)).save(path)

    save(folder / "photo.jpg", 24, 32)
    save(folder / "huge.png", 40, 48)
    save(folder / "face16.png", 16, 16)
    for name in ("a.png", "b.jpg"):
        save(folder / "photos" / name, 72, 72)
    (folder / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "lowres.png", folder / "examples" / "lowres.png")
    torch.save({"params_ema": make_tiny("rrdb_x4").state_dict()},
               folder / "RealESRGAN_x4plus.pth")
    torch.save(make_tiny_denoiser("sr3").state_dict(), folder / "I830000_E32_gen.pth")
    write_tiny_sd_x4(folder / "stable-diffusion-x4-upscaler", text_encoder=True)


def _edgesr() -> str:
    script = Path(sys.executable).with_name("edgesr")
    assert script.is_file(), f"the edgesr command is not installed beside {sys.executable}"
    return str(script)


def test_every_readme_command_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _workspace(work)
    env = {**os.environ, "EDGESR_CACHE": str(tmp_path / "cache")}
    ran = 0
    for command in readme_commands():
        if command in SETUP:
            continue
        words = shlex.split(command)
        assert words[0] in ("edgesr", ".venv/bin/edgesr"), \
            f"README command run by no test (add its section to ELSEWHERE): {command}"
        argv = [_edgesr(), *words[1:]]
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        ran += 1
    assert ran >= 20
    for i, block in enumerate(readme_python()):
        script = work / f"readme_{i}.py"
        script.write_text(block)
        done = subprocess.run([sys.executable, script.name], cwd=work, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert readme_python(), "the README shows the Python API"
    assert Image.open(work / "examples" / "lowres_x4.png").size == (384, 256)
    assert Image.open(work / "face128.png").size == (128, 128)


@pytest.mark.parametrize("command", ["edgesr upscale a.png -o b.png  # note",
                                     "edgesr export sd/ -o out/ --prompt \"\""])
def test_commands_are_parsed_as_a_shell_would(command, tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"## Commands\n```bash\n{command}\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "README", readme)
    assert shlex.split(readme_commands()[0]) == shlex.split(command, comments=True)
