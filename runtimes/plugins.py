"""Third-party backends: the ``edgesr.backends`` entry-point group.

A plugin package declares, in its distribution metadata::

    [project.entry-points."edgesr.backends"]
    rknn = "edgesr_rknn:ENTRY"

where ``ENTRY`` is a ``registry.BackendEntry`` (or a callable returning one) whose ``name`` is
the entry point's name. Entry points are read once, the first time a backend name is not a
built-in one or every backend is listed; the plugin's runtime module itself is imported only
when the backend is used. A plugin that cannot be loaded, or that names a built-in backend,
is left out with one clear line (``registry.plugin_errors``; ``edgesr backends`` shows it)
and never breaks the built-in backends. The registry calls ``discover``; this module imports
nothing of it.
"""

import sys
from dataclasses import replace
from functools import cache
from importlib import metadata

from edgesr.errors import first_line

GROUP = "edgesr.backends"


@cache
def discover(entry_type: type, builtin: frozenset[str]) -> tuple[dict, dict[str, str]]:
    """(name -> entry, name -> why it was left out) from the entry-point group: each entry
    point must resolve to an ``entry_type`` (or a callable returning one) named as the entry
    point, and not one of the ``builtin`` names."""
    found, errors = {}, {}
    for point in metadata.entry_points(group=GROUP):
        dist = point.dist.name if point.dist is not None else point.value.partition(":")[0]
        where = f"backend {point.name!r} (plugin from {dist})"
        try:
            value = point.load()
            value = value() if callable(value) and not isinstance(value, entry_type) else value
        except Exception as exc:  # any failure of third-party code: one line, not a crash
            errors[point.name] = f"{where} failed to load: {type(exc).__name__}: {first_line(exc)}"
            continue
        if not isinstance(value, entry_type):
            errors[point.name] = f"{where} is not an edgesr BackendEntry ({type(value).__name__})"
        elif value.name != point.name:
            errors[point.name] = f"{where} declares the name {value.name!r}"
        elif point.name in builtin or point.name in found:
            errors[point.name] = f"{where} is already registered; left out"
        else:
            found[point.name] = replace(value, plugin=dist)
    for line in errors.values():
        print(f"edgesr: {line}", file=sys.stderr)
    return found, errors
