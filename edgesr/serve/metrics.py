"""The service's Prometheus metrics, in a registry of its own (one per app)."""

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

#: Request latency buckets (seconds): a tiny image on a small model up to a large photo.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Requests by endpoint and status, latency, queue depth, images/tiles/pixels done per
    model (rate() of them gives images/s and tiles/s), and the engines in use."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("edgesr_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("edgesr_request_duration_seconds", "HTTP request latency",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("edgesr_queue_depth", "images waiting for a worker",
                                 registry=r)
        self.running = Gauge("edgesr_jobs_running", "images being upscaled now", registry=r)
        self.rejected = Counter("edgesr_queue_rejected", "requests refused because the queue "
                                "was full (429)", registry=r)
        self.images = Counter("edgesr_images", "images upscaled, by model and outcome",
                              ["model", "outcome"], registry=r)
        self.tiles = Counter("edgesr_tiles", "tiles run through the model", ["model"],
                             registry=r)
        self.pixels = Counter("edgesr_input_pixels", "input pixels upscaled", ["model"],
                              registry=r)
        self.upscale_seconds = Histogram("edgesr_upscale_seconds", "time a worker spent on one "
                                         "image (decode, upscale, encode)", ["model"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.engine = Info("edgesr_engine", "the engines loaded: model file, backend, "
                           "precision, scale, tile", ["name"], registry=r)

    def describe_engine(self, name: str, *, model: str, backend: str, precision: str, scale: int,
                        tile: int, overlap: int) -> None:
        self.engine.labels(name=name).info({
            "model": model, "backend": backend, "precision": precision, "scale": str(scale),
            "tile": str(tile), "overlap": str(overlap)})

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
