"""``edgesr watch IN/ OUT/``: upscale every image that lands in a folder, once."""

import argparse
import logging
import sys

from edgesr.commands.session_options import add_session_options, session_settings


def register(sub) -> None:
    p = sub.add_parser("watch", help="upscale each new image of a folder into another, once")
    p.add_argument("input", help="the folder to watch")
    p.add_argument("output", help="where the upscaled images go (and the record of what is "
                   "done: .edgesr-watch.json)")
    add_session_options(p)
    p.add_argument("-s", "--outscale", type=float, default=None,
                   help="final scale, if other than the model's")
    p.add_argument("--ext", help="output extension, e.g. .png (default: the input's)")
    p.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                   help="a file is taken once unchanged this long (default: 2)")
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                   help="seconds between looks at the folder (default: 1)")
    p.add_argument("--once", action="store_true",
                   help="handle the files there now, then exit (for cron and scripts)")
    p.add_argument("-q", "--quiet", action="store_true", help="log failures only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import edgesr
    from edgesr.serve.watch import Watcher

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    failed = []
    with edgesr.load(args.model, **session_settings(args)) as session:
        logging.getLogger("edgesr.watch").info("edgesr: %s; model %s", session.describe(),
                                               session.model.name)
        watcher = Watcher(session, Path(args.input), Path(args.output), ext=args.ext,
                          outscale=args.outscale, settle_s=args.settle, poll_s=args.poll,
                          on_result=lambda r: r.error and failed.append(r))
        watcher.run(once=args.once)
    if args.once and watcher.failed:
        print(f"edgesr: {len(watcher.failed)} file(s) skipped (listed in "
              f"{watcher.manifest}):", file=sys.stderr)
        for name, entry in sorted(watcher.failed.items()):
            print(f"  {name}: {entry['error']}", file=sys.stderr)
    return 1 if failed else 0
