"""What a service runs with: where it may write, what it accepts, how much it queues."""

from dataclasses import dataclass, field
from pathlib import Path

#: Output formats a request may ask for (``format=``), by name -> file extension.
OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tif": ".tif",
                  "tiff": ".tif", "heic": ".heic", "heif": ".heif", "avif": ".avif"}
#: Pillow's format name of an upload -> the output extension when the request names none.
SAME_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "HEIF": ".heic",
               "AVIF": ".avif"}
#: Environment variable holding the bearer token when ``--token`` is not given.
TOKEN_ENV = "EDGESR_TOKEN"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one request may ask of the box.

    ``max_upload_bytes``: request body size (413 above it). ``max_pixels``: input width x height,
    read from the image header before anything is decoded (413 above it);
    ``max_output_pixels``: the same for the output at the asked scale (the output is held in
    memory as float32: 256e6 RGB pixels are about 3 GB). ``queue_size``: images
    waiting for a worker (429 with Retry-After when full). ``timeout_s``: how long
    ``/v1/upscale`` waits for its image (504 after it). ``workers``: images upscaled at once.
    ``job_ttl_s``: how long a finished ``/v1/jobs`` result is kept for download.
    """

    max_upload_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_output_pixels: int = 256_000_000
    queue_size: int = 8
    timeout_s: float = 300.0
    workers: int = 1
    job_ttl_s: float = 3600.0


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Where the service listens and keeps its files; ``token``: the bearer token every
    request but the health checks must carry (required to bind a non-loopback address)."""

    host: str = "127.0.0.1"
    port: int = 8600
    token: str | None = None
    work_dir: Path = Path("edgesr-serve")
    limits: Limits = field(default_factory=Limits)
