"""edgesr serve as a process: SIGTERM or SIGINT with a request in flight lets the request finish,
then the process exits 0 (uvicorn re-raises the signal once shut down; edgesr takes it)."""

import io
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from PIL import Image
from serve.helpers import png_bytes

#: ``edgesr serve`` (the CLI's main, in the main thread) whose ``Session.upscale_file`` waits for
#: a gate file and marks that it started: the test holds a request in flight without timing.
GATED_SERVE = """
import pathlib, sys, time
import edgesr.api
gate, started = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
upscale_file = edgesr.api.Session.upscale_file
def gated(self, *args, **kwargs):
    started.touch()
    while not gate.exists():
        time.sleep(0.01)
    return upscale_file(self, *args, **kwargs)
edgesr.api.Session.upscale_file = gated
from edgesr.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition, what: str) -> None:
    for _ in range(2400):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_drains_the_request_in_flight_then_exits_0(tmp_path, tiny_checkpoint_x2, stop):
    port, gate, started = _free_port(), tmp_path / "gate", tmp_path / "started"
    script = tmp_path / "gated_serve.py"
    script.write_text(GATED_SERVE)
    server = subprocess.Popen(
        [sys.executable, script, gate, started, "serve", "--port", str(port), "-m",
         str(tiny_checkpoint_x2), "--backend", "torch", "--tile", "16", "--overlap", "4",
         "--work-dir", tmp_path / "work"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(server.stdout), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    answer = {}
    try:
        def ready() -> bool:
            assert server.poll() is None, "".join(log)
            try:
                return httpx.get(f"{url}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        _wait_for(ready, "the server ready")
        client = threading.Thread(target=lambda: answer.update(
            reply=httpx.post(f"{url}/v1/upscale", content=png_bytes(), timeout=120)))
        client.start()
        _wait_for(started.exists, "the request being upscaled")
        server.send_signal(stop)
        _wait_for(lambda: any("Shutting down" in line for line in log), "uvicorn shutting down")
        gate.touch()  # only now may the request in flight finish
        client.join(120)
        server.wait(120)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    reader.join(10)
    output = "".join(log)
    assert server.returncode == 0, output
    assert answer["reply"].status_code == 200, output
    assert Image.open(io.BytesIO(answer["reply"].content)).size == (56, 40)
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
