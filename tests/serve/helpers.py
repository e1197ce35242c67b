"""Test helpers for the service: a live uvicorn server, a gated session, small images."""

import io
import socket
import threading
import time

import numpy as np
from PIL import Image


class LiveServer:
    """``app`` served by uvicorn on 127.0.0.1 (a socket bound to port 0, so no port race)."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.socket.close()


class GatedSession:
    """A session whose file upscales wait until ``gate`` is set: a test can hold the worker
    busy for as long as it needs, without timing anything."""

    def __init__(self, session):
        self._session = session
        self.gate = threading.Event()
        self.started = threading.Event()

    def upscale_file(self, *args, **kwargs):
        self.started.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self._session.upscale_file(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._session, name)


def png_bytes(h: int = 20, w: int = 28, seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(buf, fmt)
    return buf.getvalue()
