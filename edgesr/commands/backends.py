"""``edgesr backends``: every runtime backend, whether it runs on this machine, and why not."""

import argparse
import importlib
from importlib import metadata


def register(sub) -> None:
    b = sub.add_parser("backends", help="list runtime backends and why any is unavailable")
    b.set_defaults(func=run)


def probe(name: str) -> tuple[bool, str]:
    """(available, detail): the version and devices, or the reason it cannot run here."""
    from edgesr.runtimes.registry import BACKENDS

    entry = BACKENDS[name]
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        return False, f"{exc}; install it with pip install {entry.requires}"
    reason = getattr(module, "unavailable_reason", lambda: None)()
    if reason:
        return False, reason
    describe = getattr(module, "describe", None)
    if describe is not None:
        return True, describe()
    distribution = entry.requires.split()[0]
    return True, f"{distribution} {metadata.version(distribution)}"


def run(args: argparse.Namespace) -> int:
    from edgesr.runtimes.registry import BACKENDS

    width = max(map(len, BACKENDS))
    for name in BACKENDS:
        ok, detail = probe(name)
        print(f"{name:<{width}}  {'yes' if ok else 'no ':<3}  {detail}")
    return 0
