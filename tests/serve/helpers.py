"""Test helpers for the service: a gated session, small images; ``LiveServer`` is
``edgesr.serve.server.ThreadedServer``."""

import io
import threading

import numpy as np
from PIL import Image

from edgesr.serve.server import ThreadedServer as LiveServer  # noqa: F401


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
