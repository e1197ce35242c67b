"""``edgesr build -b SAMPLER_BACKEND``: every graph of a diffusion model built into the engine
cache (``edgesr.diffusion.engines``). stdout gets each engine's path, one a line, in the order
the sampler opens them (or, with ``--json``, one JSON document: the model to run and its
engines); what was built or found, and how to run it, goes to stderr."""

import argparse
import time
from pathlib import Path

from edgesr.commands.jsonout import emit, stdout_to_stderr
from edgesr.errors import EdgesrError

#: The ``edgesr build`` flags a sampler's session options may take (``BUILD_FIELDS``).
FLAGS = ("tile", "min_tile", "opt_tile", "max_tile", "batch", "device", "workspace_mb")


def run_sampler(args: argparse.Namespace) -> int:
    from edgesr.diffusion import engines
    from edgesr.pipeline import resolve_model
    from edgesr.runtimes.registry import entry, load

    backend = args.backend
    spec = entry(backend).engine
    assert spec is not None  # argparse's choices are the engine backends
    options = engines.sampler_options(backend, args.precision,
                                      {flag: getattr(args, flag) for flag in FLAGS})
    load(backend, spec.builder).identity(options)  # no TensorRT, GPU or coremltools: say so now
    model = resolve_model(args.model)
    if not model.exists():
        raise EdgesrError(f"{model}: model not found")
    with stdout_to_stderr():  # library logs (OpenVINO, coremltools, torch) never reach stdout
        model_file = engines.sampler_model(backend, model)
        built = _build(backend, model_file, options, args.cache)
        name = f"{model.stem}.onnx" if model_file.suffix == ".onnx" and model != model_file \
            else None
        run, files = _place(model_file, built, args.output, name)
    rows = []
    for (graph, entry_, seconds), paths in zip(built, files, strict=True):
        key = entry_.key
        rows.append({"graph": graph.name, "path": str(paths[-1]),
                     "cache_entry": str(entry_.artifact), "files": [str(p) for p in paths],
                     "precision": key.precision, "profile": key.profile, "device": key.device,
                     "backend_version": key.backend_version, "built": entry_.built,
                     "seconds": round(seconds, 3) if entry_.built else 0.0})
    human = [_line(backend, args.precision, row) for row in rows]
    if not args.output:
        human += [f"note: {beside} is beside {graph.name}; {backend} runs it, not the engine "
                  "cache's" for graph, _, _ in built
                  if (beside := engines.engine_beside(graph, spec.artifact)).exists()]
    human.append(f"run it: edgesr upscale IMAGE -o OUT -m {run} -b {backend}:{args.precision}")
    document = {"model": str(run), "source": str(model), "backend": backend,
                "precision": args.precision, "engines": rows,
                "paths": [row["path"] for row in rows]}
    emit(args, document, human="\n".join(human), plain="\n".join(document["paths"]))
    return 0


def _build(backend: str, model_file: Path, options, cache_root) -> list:
    """(graph, cache entry, seconds) of each graph the sampler opens."""
    from edgesr.diffusion.engines import sampler_graphs
    from edgesr.runtimes.engine_cache import EngineCache, build_engine

    cache, built = EngineCache(cache_root), []
    for graph in sampler_graphs(model_file):
        start = time.perf_counter()
        found = build_engine(backend, graph, options, cache=cache)
        built.append((graph, found, time.perf_counter() - start))
    return built


def _place(model_file: Path, built: list, output: Path | None,
           name: str | None) -> tuple[Path, list[list[Path]]]:
    """(what to run, each engine's files): the ``-o`` folder's, else the cache's."""
    from edgesr.diffusion.engines import write_folder
    from edgesr.runtimes.engine_cache import artifact_files

    if output is None:
        return model_file, [artifact_files(found.artifact) for _, found, _ in built]
    return write_folder(model_file, [(graph, found.artifact) for graph, found, _ in built],
                        output, name=name)


def _line(backend: str, precision: str, row: dict) -> str:
    verb = f"built in {row['seconds']:.1f} s" if row["built"] else "cached"
    device = "any device" if row["device"] == "any" else row["device"]
    return (f"{backend} {precision}: {row['graph']} -> {row['precision']} {row['profile']} for "
            f"{device} ({verb})")
