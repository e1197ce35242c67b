"""Every edgesr module imports, and no two modules import each other, directly or round a loop.

Imports inside functions count (a lazy import that closes a loop is still a loop, only deferred);
``if TYPE_CHECKING:`` imports do not (they never run).
"""

import ast
import functools
import importlib
import pkgutil
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    """Every module of the packages pyproject.toml installs (export/, runtimes/, ... as
    ``edgesr.*``), imported."""
    listed = re.search(r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(),
                       re.DOTALL | re.MULTILINE)
    found = {}
    for package in re.findall(r'"([\w.]+)"', listed[1]):  # tomllib: Python 3.11+
        module = importlib.import_module(package)
        found[package] = Path(module.__file__)
        for info in pkgutil.iter_modules(module.__path__, f"{package}."):
            if not info.ispkg and not info.name.endswith("__main__"):
                found[info.name] = Path(importlib.import_module(info.name).__file__)
    return found


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported_names(name: str, path: Path) -> set[str]:
    """Dotted names an edgesr module imports anywhere in its code, relative ones resolved."""
    if path.suffix != ".py":  # a compiled extension
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    stack = [ast.parse(path.read_text(), str(path))]
    while stack:
        node = stack.pop()
        if _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.update(f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return {n for n in names if n == "edgesr" or n.startswith("edgesr.")}


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the edgesr modules it imports. An imported name resolves to the module that
    defines it (``from edgesr.runtimes import Runtime``: ``edgesr.runtimes.base``), else to its
    longest module prefix. A package's ``__init__`` importing its own modules is re-exporting
    their names, not a dependency, and is left out."""
    modules = _modules()

    def owner(name: str) -> str:
        if name in modules:
            return name
        base, _, attr = name.rpartition(".")
        if base in modules:
            value = getattr(importlib.import_module(base), attr, None)
            defined = getattr(value, "__module__", None)
            return defined if defined in modules else base
        return owner(base)

    graph = {}
    for name, path in modules.items():
        deps = {owner(n) for n in _imported_names(name, path)} - {name}
        if path.name == "__init__.py":
            deps = {d for d in deps if not d.startswith(f"{name}.")}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop (its modules, the first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for dep in sorted(graph[node]):
            cycle = visit(dep)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    return next((c for c in map(visit, sorted(graph)) if c), None)


def test_find_cycle_finds_a_loop_and_only_a_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_every_module_imports_and_there_is_no_import_cycle():
    graph = import_graph()
    assert {"edgesr.pipeline", "edgesr.export.quantize", "edgesr.runtimes.registry",
            "edgesr.models.ncnn", "edgesr.profiling.isolation"} <= graph.keys()
    assert "edgesr.errors" in graph["edgesr.fsutil"]  # the walk sees imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_models_do_not_import_export_or_runtimes():
    """Model loading sits below export and the runtimes (the ncnn importer lives in models/)."""
    graph = import_graph()
    back = {(name, dep) for name, deps in graph.items() if name.startswith("edgesr.models")
            for dep in deps if dep.startswith(("edgesr.export", "edgesr.runtimes"))}
    assert not back
