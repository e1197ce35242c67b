"""The README's service lines run as written (on a free port instead of 8600): ``edgesr serve``
started in the background, its ``curl`` lines and its Python client (the ``py`` block), then
SIGTERM, after which the server exits 0. tests/test_readme.py runs the README's ``bash``
blocks; a server that never exits cannot be one of them."""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import smooth_image, tiny_descriptor
from PIL import Image

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    return text[text.index("## NAS: service, watch folder, Ray"):].split("\n## ", 1)[0]


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's lines use curl")
def test_readme_service_lines_run(tmp_path):
    from edgesr.export.onnx_export import export_onnx

    section = _section()
    console = re.findall(r"```console\n(.*?)```", section, flags=re.S)[0]
    lines = [line[2:] for line in console.splitlines() if line.startswith("$ ")]
    client = re.findall(r"```py\n(.*?)```", section, flags=re.S)[0]
    port = _free_port()
    lines = [line.replace("8600", port) for line in lines]
    serve, rest = lines[0], lines[1:]
    assert serve.startswith("edgesr serve") and serve.endswith("&")

    export_onnx(tiny_descriptor("compact_x4"), tmp_path / "x4plus.onnx", check=False)
    rng = np.random.default_rng(0)
    Image.fromarray((smooth_image(rng, 24, 32) * 255).astype(np.uint8)).save(
        tmp_path / "photo.jpg")
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "EDGESR_CACHE": str(tmp_path / "cache")}
    server = subprocess.Popen(shlex.split(serve.rstrip("& ")), cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(1200):
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        for line in rest:
            done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        (tmp_path / "client.py").write_text(client.replace("8600", port))
        done = subprocess.run([sys.executable, "client.py"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "/v1/jobs/" in done.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=120)[0]
    assert server.returncode == 0, output  # drained, then a clean exit
    assert Image.open(tmp_path / "photo_x4.jpg").size == (128, 96)
    assert Image.open(tmp_path / "photo_x2.png").size == (64, 48)
    assert Image.open(tmp_path / "photo_x4.webp").format == "WEBP"
    assert "Application shutdown complete" in output and "Traceback" not in output
