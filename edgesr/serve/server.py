"""Run the app under uvicorn: engines loaded once before the socket opens, closed after the
last request; SIGINT/SIGTERM stop accepting, finish in-flight and queued work, then exit 0."""

import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from edgesr.serve.auth import check_bind
from edgesr.serve.config import ServeConfig
from edgesr.serve.engines import EngineSpec, close_engines, load_engines


def serve(config: ServeConfig, specs: list[EngineSpec], *, log_level: str = "info") -> None:
    """Load ``specs`` and serve them until interrupted."""
    import uvicorn

    from edgesr.serve.app import create_app

    check_bind(config.host, config.token)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    engines = load_engines(specs)
    try:
        for name, session in engines.items():
            logging.getLogger("edgesr.serve").info(
                "model %s: %s, x%d; %s", name, session.model.name, session.scale,
                session.describe())
        app = create_app(config, engines, {s.name: s.tiling for s in specs})
        server = uvicorn.Server(uvicorn.Config(
            app, host=config.host, port=config.port, log_level=log_level,
            timeout_graceful_shutdown=int(config.limits.timeout_s) + 5))
        with _stopping_is_success(server):
            server.run()
    finally:
        close_engines(engines)


@contextmanager
def _stopping_is_success(server) -> Iterator[None]:
    """Once shut down, uvicorn raises the SIGINT/SIGTERM that stopped it again, for the
    handlers it had displaced: these handlers take it and return, so a service stopped after a
    clean drain exits 0 rather than by the signal (-15) or a KeyboardInterrupt. (A signal that
    comes before uvicorn has installed its own handlers asks the server to stop.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
                for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ThreadedServer:
    """An app served by uvicorn in a background thread, on a loopback port picked by the OS
    (the socket is bound before uvicorn starts, so there is no race for the port): for
    embedding in a Python process, tests and benchmarks. ``url`` is its address."""

    def __init__(self, app, host: str = "127.0.0.1", log_level: str = "warning"):
        import uvicorn

        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        # Accepted connections inherit this: without it, a response written in two parts
        # waits for the client's delayed ACK (about 40 ms on Linux) on a kept-alive connection.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.bind((host, 0))
        port = self.socket.getsockname()[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="edgesr-uvicorn", daemon=True)

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the edgesr server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop as SIGTERM does: in-flight requests and queued jobs finish first."""
        self.server.should_exit = True
        self.thread.join()
        self.socket.close()
