"""``edgesr build`` for the sampler backends: every graph of a diffusion model built into the
engine cache, as the same entries the sampler opens when it runs (so a later ``edgesr upscale``
on that backend finds them instead of building), and with ``-o`` a folder that runs as it is.

What is built is what the backend's Config asks its sessions for: ``sampler_options`` makes the
Config at the precision asked for (``edgesr build`` flags mapped to its fields by the session
options' ``BUILD_FIELDS``; none given: the Config's defaults, as ``upscale`` runs it) and takes
its ``build_options()``, which its session factory builds on a cache miss too. The graphs
(``sampler_graphs``): an SD x4 export folder's ``unet.onnx`` and ``vae_decoder.onnx``; an SR3
``.onnx``, or an SR3 checkpoint's cached ONNX export (what the sr3 backends run for it). A
diffusers folder is exported first (the samplers run the export: graphs, schedulers, prompt
embeddings).

``-o DIR`` (``write_folder``): the model copied into DIR (an SD x4 export folder's files; an SR3
graph as ``DIR/<name>.onnx``, its ``.onnx.data`` beside it) with each graph's engine beside it,
named after the graph (``unet.xml`` + ``unet.bin``, ``unet.plan``, ``unet.mlpackage``) and no
other engine: each sampler backend opens an engine beside its graph before the engine cache, so
DIR runs on that backend without the cache. Files are hard-linked where the file system allows
(the real UNet is 1.8 GiB; writers replace files by renaming, never in place), else copied; DIR
appears whole or not at all.
"""

import os
import shutil
from dataclasses import fields
from pathlib import Path

from edgesr.errors import EdgesrError
from edgesr.fsutil import atomic_path
from edgesr.model_kinds import SD_GRAPHS


def sampler_model(backend: str, model: Path) -> Path:
    """The file ``backend`` runs for ``model`` (an SD x4 export folder, an SR3 ``.onnx``); a
    diffusers folder is one line saying how to export it."""
    from edgesr.model_kinds import resolve

    if model.is_dir() and (model / "model_index.json").is_file() \
            and not (model / SD_GRAPHS[0]).is_file():
        raise EdgesrError(f"{model}: a diffusers folder; the samplers run its export: edgesr "
                          f"export {model} -o OUT/, then edgesr build OUT/ -b {backend}")
    return resolve(model, backend)[0]


def sampler_graphs(model_file: Path) -> list[Path]:
    """The graphs the sampler opens for ``model_file``, in the order it opens them."""
    return [model_file / name for name in SD_GRAPHS] if model_file.is_dir() else [model_file]


def sampler_options(backend: str, precision: str, flags: dict):
    """The ``BuildOptions`` backend ``backend``'s sessions build at ``precision``, with the
    ``edgesr build`` flags given (``flags``: name -> value; ``tile`` is min = opt = max)."""
    from edgesr.runtimes.registry import config_class, config_for, precision_options

    cls = config_class(backend)
    mapping = getattr(cls, "BUILD_FIELDS", {})
    tile = flags.get("tile")
    flags = {**flags, **({k: tile for k in ("min_tile", "opt_tile", "max_tile")} if tile else {})}
    types = {f.name: type(f.default) for f in fields(cls)}
    options = {}
    for flag, value in flags.items():
        if flag in mapping and value is not None:
            name = mapping[flag]
            try:
                options[name] = types[name](value)
            except ValueError:
                raise EdgesrError(f"{backend}: --{flag.replace('_', '-')} {value!r} is not "
                                  f"a {types[name].__name__}") from None
    config = config_for(backend, **precision_options(backend, precision), **options)
    return config.build_options()


def engine_beside(graph: Path, artifact: str) -> Path:
    """Where an engine named like ``artifact`` lies beside ``graph`` (``unet.xml``)."""
    return graph.with_suffix(Path(artifact).suffix)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _graph_files(graph: Path) -> list[Path]:
    """An ONNX graph and its external data."""
    data = graph.with_name(graph.name + ".data")
    return [graph, data] if data.is_file() else [graph]


def write_folder(model_file: Path, engines: list[tuple[Path, Path]], output: Path, *,
                 name: str | None = None) -> tuple[Path, list[list[Path]]]:
    """Write the runnable folder ``output`` (see the module docstring) from ``engines``:
    (graph, engine artifact) pairs. ``name``: an SR3 graph's file name in it (default: its
    own). Returns (what to run in ``output``, each engine's files there, its artifact last)."""
    from edgesr.runtimes.engine_cache import artifact_files

    if output.suffix in (".onnx", ".xml", ".plan", ".mlpackage"):
        raise EdgesrError(f"-o {output}: a diffusion model's engines go into a folder, with "
                          "the model; give -o a folder")
    if output.exists() and not output.is_dir():
        raise EdgesrError(f"-o {output}: not a folder")
    graph_names = {graph: (name if len(engines) == 1 and name else graph.name)
                   for graph, _ in engines}
    stems = {Path(n).stem for n in graph_names.values()}
    if model_file.is_dir():
        kept = [p for p in model_file.iterdir() if not p.name.startswith(".") and (
            p.name.split(".")[0] not in stems or p.name.endswith((".onnx", ".onnx.data")))]
    else:
        kept = []
    written: list[list[Path]] = []
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        tmp.mkdir()
        for path in kept:
            if path.is_dir():
                shutil.copytree(path, tmp / path.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(str(path), str(tmp / path.name))
        for graph, artifact in engines:
            graph_name = graph_names[graph]
            if not model_file.is_dir():
                for src in _graph_files(graph):
                    _link_or_copy(str(src), str(tmp / (graph_name + src.name[len(graph.name):])))
            stem = Path(graph_name).stem
            files = []
            for src in artifact_files(artifact):
                dst = tmp / (stem + src.name[len(artifact.stem):])
                if src.is_dir():
                    shutil.copytree(src, dst, copy_function=_link_or_copy)
                else:
                    _link_or_copy(str(src), str(dst))
                files.append(output / dst.name)
            written.append(files)
        _check_replaceable(output, {p.name for p in tmp.iterdir()})
    run = output if model_file.is_dir() else output / graph_names[engines[0][0]]
    return run, written


def _check_replaceable(output: Path, names: set[str]) -> None:
    """Refuse to replace a folder holding anything the new one would not (someone's files)."""
    if output.is_dir():
        other = sorted({p.name for p in output.iterdir()} - names)
        if other:
            raise EdgesrError(f"-o {output}: the folder holds other files ({', '.join(other[:3])}"
                              f"{', ...' if len(other) > 3 else ''}); give a new or empty folder")
