"""``edgesr batch IN/ OUT/ --ray [ADDRESS]``: a folder of images on a Ray cluster (Ray Data)."""

import argparse
import sys
from pathlib import Path

from edgesr.commands.session_options import add_session_options, session_settings


def register(sub) -> None:
    p = sub.add_parser("batch", help="upscale a folder on a Ray cluster (same outputs as "
                       "edgesr upscale IN/ -o OUT/)")
    p.add_argument("input", help="a folder of images (a path every node sees)")
    p.add_argument("output", help="the output folder (a path every node sees)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", required=True,
                   help="run on the Ray cluster at ADDRESS (e.g. ray://head:10001 or auto); "
                   "without ADDRESS, on a Ray instance started here")
    p.add_argument("--actors", type=int, default=2,
                   help="Ray Data actors, each holding one loaded model and one CPU (default: 2)")
    add_session_options(p)
    p.add_argument("-s", "--outscale", type=float, default=None,
                   help="final scale, if other than the model's")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=None,
                   help="output bit depth (default: the input's)")
    p.add_argument("--ext", help="output extension, e.g. .png (default: the input's)")
    p.add_argument("-q", "--quiet", action="store_true", help="report failures only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgesr.errors import EdgesrError
    from edgesr.pipeline import plan_outputs, resolve_model
    from edgesr.serve.ray_batch import run_on_ray

    source = Path(args.input)
    if not source.is_dir():
        raise EdgesrError(f"{source}: edgesr batch takes a folder")
    if not resolve_model(args.model).exists():
        raise EdgesrError(f"{resolve_model(args.model)}: model file not found")
    pairs = plan_outputs(source, Path(args.output), "batch", args.ext)

    def report(result) -> None:
        if result.error:
            print(f"edgesr: failed: {result.error}", file=sys.stderr)
        elif not args.quiet:
            print(f"{result.source} -> {result.target}")

    results = run_on_ray(pairs, model=args.model, actors=args.actors, address=args.ray or None,
                         outscale=args.outscale, bit_depth=args.bit_depth, on_result=report,
                         on_engine=None if args.quiet else
                         lambda line: print(f"edgesr: {line}", file=sys.stderr),
                         **session_settings(args))
    failed = [r for r in results if r.error]
    if failed:
        print(f"edgesr: {len(failed)} of {len(results)} images failed", file=sys.stderr)
    return 1 if failed else 0
