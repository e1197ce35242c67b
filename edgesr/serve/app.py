"""The HTTP app: ``POST /v1/upscale`` (image in, image out), ``/v1/jobs`` for large images,
health, readiness, metrics and the OpenAPI document (``/openapi.json``, ``/docs``).

Every file a request causes lives in the work folder under a name the server makes (a random
job id): uploads in ``uploads/``, results in ``results/``. Nothing a client sends names a path.
"""

import asyncio
import re
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from edgesr import __version__
from edgesr.api import Session
from edgesr.errors import EdgesrError
from edgesr.fsutil import remove
from edgesr.heif import register_openers
from edgesr.serve.auth import authorized
from edgesr.serve.config import OUTPUT_FORMATS, SAME_FORMAT, ServeConfig
from edgesr.serve.jobs import Job, WorkQueue
from edgesr.serve.metrics import Metrics
from edgesr.serve.uploads import RequestError, inspect_image, receive_upload

#: Paths any client may call, token or not (process supervisors and load balancers).
OPEN_PATHS = ("/healthz", "/readyz")
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp",
               ".tif": "image/tiff", ".heic": "image/heic", ".heif": "image/heif",
               ".avif": "image/avif"}
JOB_ID = re.compile(r"[0-9a-f]{32}")
#: The request body of the upload endpoints, for the OpenAPI document (read by hand, streamed).
IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}}}}}
MAX_OUTSCALE = 16.0


def create_app(config: ServeConfig, engines: dict[str, Session],
               specs: dict[str, dict] | None = None) -> FastAPI:
    """The app serving ``engines`` (name -> loaded session; the first is the default).
    ``specs``: per engine, its tile and overlap, shown in /metrics and /v1/models."""
    if not engines:
        raise EdgesrError("a service needs at least one model")
    metrics = Metrics()
    work = WorkQueue(engines, config.limits, metrics)
    uploads, results = config.work_dir / "uploads", config.work_dir / "results"
    default_model = next(iter(engines))
    for name, session in engines.items():
        spec = (specs or {}).get(name, {})
        metrics.describe_engine(name, model=session.model.name, backend=session.backend,
                                precision=session.precision or "unreported", scale=session.scale,
                                tile=spec.get("tile", 0), overlap=spec.get("overlap", 0))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for folder in (uploads, results):
            remove(folder)  # what a killed server left: only names it made itself
            folder.mkdir(parents=True)
        register_openers()  # HEIC uploads, where pillow-heif is installed
        work.start()
        try:
            yield
        finally:
            await asyncio.to_thread(work.stop)

    app = FastAPI(title="edgesr", version=__version__, lifespan=lifespan,
                  description="Image super-resolution as a local service.")
    app.state.work = work
    app.state.metrics = metrics

    @app.middleware("http")
    async def guard_and_count(request: Request, call_next):
        start = time.perf_counter()
        if request.url.path not in OPEN_PATHS and not authorized(
                request.headers.get("authorization"), config.token):
            response = _problem(RequestError(401, "missing or wrong bearer token",
                                             {"WWW-Authenticate": "Bearer"}))
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "other")
        metrics.requests.labels(endpoint=endpoint, status=str(response.status_code)).inc()
        metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):
        return _problem(exc)

    async def accept(request: Request, model: str | None, outscale: float | None,
                     fmt: str | None, keep: bool) -> Job:
        model = model or default_model
        if model not in engines:
            raise RequestError(404, f"unknown model {model!r}; loaded: {', '.join(engines)}")
        if outscale is not None and not 0 < outscale <= MAX_OUTSCALE:
            raise RequestError(400, f"outscale must be in (0, {MAX_OUTSCALE:g}], not {outscale}")
        if fmt is not None and fmt.lower() not in OUTPUT_FORMATS:
            raise RequestError(400, f"unknown format {fmt!r}; use one of "
                                    f"{', '.join(OUTPUT_FORMATS)}")
        job_id = Job.new_id()
        source = uploads / f"{job_id}.upload"
        try:
            await receive_upload(request, source, config.limits.max_upload_bytes)
            width, height, found = inspect_image(source, config.limits.max_pixels)
        except BaseException:
            remove(source)
            raise
        factor = outscale or engines[model].scale
        out_pixels = round(width * factor) * round(height * factor)
        if out_pixels > config.limits.max_output_pixels:
            remove(source)
            raise RequestError(413, f"a {width}x{height} image at x{factor:g} gives {out_pixels} "
                                    f"pixels, over the output limit of "
                                    f"{config.limits.max_output_pixels}")
        ext = OUTPUT_FORMATS[fmt.lower()] if fmt else SAME_FORMAT.get(found, ".png")
        job = Job(model=model, source=source, target=results / f"{job_id}{ext}",
                  size=(width, height), outscale=outscale, id=job_id)
        try:
            return work.submit(job, keep=keep)
        except BaseException:
            remove(source)
            raise

    @app.post("/v1/upscale", summary="Upscale one image; the image comes back",
              response_class=FileResponse, openapi_extra=IMAGE_BODY,
              responses={200: {"content": {t: {} for t in sorted(set(MEDIA_TYPES.values()))}},
                         400: {}, 401: {}, 413: {}, 429: {}, 504: {}})
    async def upscale(request: Request,
                      model: str | None = Query(None, description="a loaded model's name"),
                      outscale: float | None = Query(None, description="final scale, if other "
                                                     "than the model's"),
                      format: str | None = Query(None, description="output format (default: "
                                                 "the input's): " + ", ".join(OUTPUT_FORMATS))):
        """The image is the raw request body or the multipart field ``file``."""
        job = await accept(request, model, outscale, format, keep=False)
        try:
            await asyncio.wait_for(_ended(job), timeout=config.limits.timeout_s)
        except TimeoutError:
            job.cancel()
            raise RequestError(504, f"not done within {config.limits.timeout_s:g} s") from None
        except asyncio.CancelledError:
            job.cancel()
            raise
        if job.state != "done":
            raise RequestError(job.status, job.error or job.state)
        return FileResponse(job.target, media_type=MEDIA_TYPES[job.target.suffix],
                            background=BackgroundTask(remove, job.target))

    @app.post("/v1/jobs", status_code=202, summary="Queue one image; poll the job for it",
              openapi_extra=IMAGE_BODY)
    async def submit_job(request: Request, model: str | None = None,
                         outscale: float | None = None, format: str | None = None):
        job = await accept(request, model, outscale, format, keep=True)
        return {**job.describe(), "status_url": f"/v1/jobs/{job.id}",
                "result_url": f"/v1/jobs/{job.id}/result"}

    def kept(job_id: str) -> Job:
        work.expire()
        job = work.kept.get(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise RequestError(404, f"no job {job_id!r} (unknown, or its result expired)")
        return job

    @app.get("/v1/jobs/{job_id}", summary="A job's state")
    async def job_state(job_id: str):
        return kept(job_id).describe()

    @app.get("/v1/jobs/{job_id}/result", summary="A finished job's image",
             response_class=FileResponse)
    async def job_result(job_id: str):
        job = kept(job_id)
        if not job.done:
            raise RequestError(409, f"job {job_id} is {job.state}; poll /v1/jobs/{job_id}",
                               {"Retry-After": str(work.retry_after())})
        if job.state != "done":
            raise RequestError(job.status, job.error or job.state)
        return FileResponse(job.target, media_type=MEDIA_TYPES[job.target.suffix])

    @app.get("/v1/models", summary="The loaded models")
    async def models():
        return {name: {"model": s.model.name, "backend": s.backend, "precision": s.precision,
                       "scale": s.scale, "default": name == default_model}
                for name, s in engines.items()}

    @app.get("/healthz", summary="The process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Models loaded and the queue taking work")
    async def readyz():
        if not work.accepting:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return {"status": "ready", "queue_depth": work.depth, "models": list(engines)}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


async def _ended(job: Job) -> None:
    """Wait (without a thread) until a worker ends ``job``."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(lambda: ended.done() or ended.set_result(None))
        except RuntimeError:  # the loop closed meanwhile
            pass

    job.add_done_callback(wake)
    await ended


def _problem(exc: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)
