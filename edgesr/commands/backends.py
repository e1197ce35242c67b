"""``edgesr backends``: every runtime backend, built in or from a plugin, whether it runs on
this machine, and why not."""

import argparse
from importlib import metadata

from edgesr.commands.jsonout import add_json_option, emit
from edgesr.errors import EdgesrError


def register(sub) -> None:
    b = sub.add_parser("backends", help="list runtime backends (built in and plugins) and why "
                       "any is unavailable")
    add_json_option(b, "print one JSON list (name, available, detail, plugin, precisions, "
                    "suffixes, engine it builds)")
    b.set_defaults(func=run)


def probe(name: str) -> tuple[bool, str]:
    """(available, detail): the version and devices, or the reason it cannot run here.

    The backend's runtime module may say more through two optional functions:
    ``unavailable_reason()`` (None when it can run) and ``describe()``; a Runtime class that
    shares its module with other backends' may have its own ``unavailable_reason``.
    """
    from edgesr.runtimes.registry import entry, load

    backend = entry(name)
    try:
        module = load(backend, backend.runtime.partition(":")[0])
        runtime = load(backend, backend.runtime)
    except EdgesrError as exc:
        return False, str(exc)
    check = getattr(runtime, "unavailable_reason", None) or getattr(
        module, "unavailable_reason", lambda: None)
    reason = check()
    if reason:
        return False, reason
    describe = getattr(module, "describe", None)
    if describe is not None:
        return True, describe()
    if not backend.requires:
        return True, "no dependencies"
    distribution = backend.requires[0]
    try:
        return True, f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return True, f"{distribution} (version unknown)"


def run(args: argparse.Namespace) -> int:
    from edgesr.runtimes.registry import entries, plugin_errors

    backends = entries()
    broken = {n: why for n, why in plugin_errors().items() if n not in backends}
    rows = []
    for name, backend in backends.items():
        ok, detail = probe(name)
        rows.append({"name": name, "available": ok, "detail": detail, "plugin": backend.plugin,
                     "precisions": list(backend.precisions), "suffixes": list(backend.suffixes),
                     "engine": None if backend.engine is None else {
                         "artifact": backend.engine.artifact, "takes": list(backend.engine.takes)}})
    rows += [{"name": name, "available": False, "detail": why, "plugin": None}
             for name, why in broken.items()]
    width = max(map(len, [*backends, *broken]))
    lines = [f"{r['name']:<{width}}  {'yes' if r['available'] else 'no ':<3}  {r['detail']}"
             + (f"  [plugin: {r['plugin']}]" if r["plugin"] else "") for r in rows]
    emit(args, rows, human="" if args.json else "\n".join(lines))
    return 0
