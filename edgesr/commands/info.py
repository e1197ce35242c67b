"""``edgesr info``: what edgesr detects in a model file or a diffusion model folder."""

import argparse
import json
from pathlib import Path

from edgesr.errors import CheckpointError


def register(sub) -> None:
    info = sub.add_parser("info", help="show the detected architecture of a model file")
    info.add_argument("model", help="model file or bundled model name")
    info.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgesr.pipeline import resolve_model

    path = resolve_model(args.model)
    if path.is_dir():
        return _describe_folder(path)
    if path.suffix == ".onnx":
        from edgesr.export.specs import read_onnx_metadata

        for key, value in read_onnx_metadata(path).items():
            print(f"{key}: {value}")
        return 0
    from edgesr.models import load_model

    desc = load_model(path)
    print(f"model: {desc.name}")
    print(f"file: {desc.source}")
    print(f"sha256: {desc.source_sha256}")
    print(f"scale: {desc.scale}  channels: {desc.in_channels} -> {desc.out_channels}  "
          f"size multiple: {desc.size_multiple}")
    print(f"hyperparameters: {desc.hyperparameters}")
    return 0


def _describe_folder(folder: Path) -> int:
    """An edgesr SD x4 export folder (its graphs, embeddings, schedulers) or a diffusers one."""
    from edgesr.diffusion.sd_upscaler import EMBEDDINGS_FILE, GRAPHS, SCHEDULERS
    from edgesr.export.specs import read_onnx_metadata

    if all((folder / graph).is_file() for graph in GRAPHS):
        print(f"model: Stable Diffusion x4 upscaler export (backend sd-upscaler)\nfolder: {folder}")
        for graph in GRAPHS:
            meta = read_onnx_metadata(folder / graph)
            files = [folder / graph, folder / f"{graph}.data"]
            size = sum(f.stat().st_size for f in files if f.is_file())
            print(f"{graph}: {meta.get('role')}, {size / 2**20:.1f} MiB, "
                  f"in {meta.get('in_channels')} -> out {meta.get('out_channels')} channels, "
                  f"size multiple {meta.get('size_multiple')}")
        embeds = folder / EMBEDDINGS_FILE
        if embeds.is_file():
            import numpy as np

            print(f"{EMBEDDINGS_FILE}: {list(np.load(embeds, mmap_mode='r').shape)} "
                  "(negative, positive)")
        else:
            print(f"{EMBEDDINGS_FILE}: missing (upscale needs --prompt-embeds)")
        for name in SCHEDULERS:
            print(f"{name}: {_json_field(folder / name / 'scheduler_config.json', '_class_name')}")
        return 0
    if (folder / "model_index.json").is_file():
        pipeline = _json_field(folder / "model_index.json", "_class_name")
        print(f"model: diffusers {pipeline} folder\nfolder: {folder}\n"
              f"export it with: edgesr export {folder} -o OUT/")
        return 0
    raise CheckpointError(f"{folder}: a folder, but neither an edgesr Stable Diffusion x4 export "
                          "(unet.onnx + vae_decoder.onnx) nor a diffusers pipeline "
                          "(model_index.json)")


def _json_field(path: Path, key: str) -> str:
    """One field of a JSON file, or what is wrong with the file."""
    try:
        return str(json.loads(path.read_text())[key])
    except (OSError, ValueError, KeyError, TypeError):
        return f"missing or unreadable ({path.name})"
