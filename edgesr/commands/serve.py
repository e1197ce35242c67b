"""``edgesr serve``: models loaded once behind a local HTTP API (see ``edgesr.serve``)."""

import argparse
import os
from pathlib import Path

from edgesr.commands.session_options import add_session_options, session_settings


def register(sub) -> None:
    p = sub.add_parser("serve", help="upscale over HTTP: a local service for NAS and photo apps")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; "
                   "any other needs --token)")
    p.add_argument("--port", type=int, default=8600, help="port (default: 8600)")
    p.add_argument("-m", "--model", action="append", metavar="[NAME=]MODEL",
                   help="a model to load, as --model of edgesr upscale takes it, optionally "
                   "named for the 'model' query field; repeatable, the first is the default "
                   "(default: realesrgan-x4plus)")
    add_session_options(p, model=False)  # the same for every model
    p.add_argument("--token", help="bearer token every request must carry (default: "
                   "$EDGESR_TOKEN); required to bind a non-loopback address")
    p.add_argument("--work-dir", default=None, help="the service's own folder for uploads and "
                   "results (default: $EDGESR_CACHE/serve)")
    p.add_argument("--max-upload", default="64M", metavar="SIZE",
                   help="largest request body (default: 64M)")
    p.add_argument("--max-pixels", type=float, default=40e6,
                   help="largest input width x height (default: 40e6)")
    p.add_argument("--max-output-pixels", type=float, default=256e6,
                   help="largest output width x height at the asked scale; the output is held "
                   "in memory (default: 256e6, about 3 GB)")
    p.add_argument("--queue-size", type=int, default=8,
                   help="images waiting before requests get 429 (default: 8)")
    p.add_argument("--workers", type=int, default=1, help="images upscaled at once")
    p.add_argument("--timeout", type=float, default=300,
                   help="seconds /v1/upscale waits for its image before a 504 (default: 300)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgesr.errors import EdgesrError
    from edgesr.fsutil import cache_dir
    from edgesr.pipeline import parse_size
    from edgesr.serve.auth import check_bind
    from edgesr.serve.config import TOKEN_ENV, Limits, ServeConfig
    from edgesr.serve.engines import engine_specs

    token = args.token or os.environ.get(TOKEN_ENV) or None
    check_bind(args.host, token)  # before any model is loaded
    for name in ("queue_size", "workers", "timeout", "max_pixels", "max_output_pixels"):
        if getattr(args, name) <= 0:
            raise EdgesrError(f"--{name.replace('_', '-')} must be positive")
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise EdgesrError(f"edgesr serve needs {exc.name}: pip install 'edgesr[serve]'") from None
    limits = Limits(max_upload_bytes=int(parse_size(args.max_upload)),
                    max_pixels=int(args.max_pixels),
                    max_output_pixels=int(args.max_output_pixels), queue_size=args.queue_size,
                    workers=args.workers, timeout_s=args.timeout)
    work_dir = Path(args.work_dir) if args.work_dir else cache_dir() / "serve"
    config = ServeConfig(host=args.host, port=args.port, token=token, work_dir=work_dir,
                         limits=limits)
    specs = engine_specs(args.model, **session_settings(args))
    from edgesr.serve.server import serve

    serve(config, specs, log_level=args.log_level)
    return 0
