"""Run the app under uvicorn: engines loaded once before the socket opens, closed after the
last request; SIGINT/SIGTERM stop accepting, finish in-flight and queued work, then exit."""

import logging

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
                "model %s: %s on %s (%s), x%d", name, session.model.name, session.backend,
                session.precision, session.scale)
        app = create_app(config, engines, {s.name: {"tile": s.tile, "overlap": s.overlap}
                                           for s in specs})
        server = uvicorn.Server(uvicorn.Config(
            app, host=config.host, port=config.port, log_level=log_level,
            timeout_graceful_shutdown=int(config.limits.timeout_s) + 5))
        server.run()
    finally:
        close_engines(engines)
