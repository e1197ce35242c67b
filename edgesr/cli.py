"""The ``edgesr`` command line; each subcommand lives in ``edgesr.commands``."""

import argparse
import importlib
import sys

from edgesr import __version__
from edgesr.commands import COMMANDS
from edgesr.errors import EdgesrError, missing_extra


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesr", description="Export, tile and run image super-resolution models.")
    parser.add_argument("--version", action="version", version=f"edgesr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"edgesr.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgesr`` console script: one clear line and exit 1 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgesrError as exc:
        print(f"edgesr: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # an optional dependency (the lean install lacks torch)
        message = missing_extra(exc)
        if message is None:
            raise
        print(f"edgesr: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgesr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
