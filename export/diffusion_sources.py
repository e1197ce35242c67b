"""The PyTorch source of an exported diffusion graph: the model its export recorded in the graph's
metadata (``source``, ``source_sha256``), checked against that hash, and the very (module,
``GraphSpec``) pair the ONNX export traced from it. What the CoreML conversion traces
(``export.diffusion_coreml``) and what the PyTorch eager sampler sessions run
(``edgesr.diffusion.torch_sessions``).
"""

from pathlib import Path

from torch import nn

from edgesr.errors import CheckpointError
from edgesr.export.diffusion_export import GraphSpec


def _load_sd(source: Path):
    from edgesr.export.sd_upscaler import load_sd_upscaler

    return load_sd_upscaler(source)


def _sd_graph(role: str):
    def graph(model, onnx_file: str) -> tuple[nn.Module, GraphSpec]:
        from edgesr.export.sd_upscaler import sd_upscaler_graphs

        return next(pair for pair in sd_upscaler_graphs(model)
                    if pair[1].metadata["role"] == role)
    return graph


def _load_sr3(source: Path):
    from edgesr.models import load_model

    return load_model(source)


def _sr3_graph(descriptor, onnx_file: str) -> tuple[nn.Module, GraphSpec]:
    from edgesr.export.diffusion_export import sr3_graph

    return descriptor.model, sr3_graph(descriptor, onnx_file)


def _weights(part: str):
    def sha256(source: Path) -> str | None:
        from edgesr.export.sd_upscaler import weights_sha256

        return weights_sha256(source / part)
    return sha256


def _file_sha256(source: Path) -> str | None:
    from edgesr.fsutil import sha256_file

    return sha256_file(source) if source.is_file() else None


#: A graph's ``role`` -> (the sha256 its export recorded, of its source; the source's loader;
#: the graph's (module, spec) in what it loaded). The UNet and VAE decoder share one loader.
SOURCES = {"unet": (_weights("unet"), _load_sd, _sd_graph("unet")),
           "vae_decoder": (_weights("vae"), _load_sd, _sd_graph("vae_decoder")),
           "denoiser": (_file_sha256, _load_sr3, _sr3_graph)}


def pytorch_source(graph: str | Path) -> tuple[Path, str]:
    """(source, role) of exported ONNX ``graph``: the PyTorch model its metadata records, checked
    against the recorded weights' sha256. CheckpointError (one line) when the export recorded
    none, it is gone, or its weights changed."""
    from edgesr.export.specs import read_onnx_metadata

    graph = Path(graph)
    meta = read_onnx_metadata(graph)
    role, source, recorded = meta.get("role"), meta.get("source"), meta.get("source_sha256")
    if role not in SOURCES:
        raise CheckpointError(f"{graph}: not an edgesr diffusion graph export (role {role!r})")
    if not source:
        raise CheckpointError(f"{graph}: its export records no PyTorch source (an export made "
                              "before edgesr recorded one)")
    source_path = Path(source)
    if not source_path.exists():
        raise CheckpointError(f"{graph}: its PyTorch source {source} is not there")
    if not recorded or SOURCES[role][0](source_path) != recorded:
        raise CheckpointError(f"{graph}: its PyTorch source {source} is not the one it was "
                              "exported from (the weights' sha256 differs)")
    return source_path, role


def open_source(graph: str | Path, loaded: dict | None = None) -> tuple[nn.Module, GraphSpec]:
    """(module, spec) of exported ONNX ``graph``, loaded from its ``pytorch_source``.
    ``loaded``: sources already loaded, by (loader, path), reused and added to (so a UNet and
    its VAE decoder load their diffusers folder once)."""
    graph = Path(graph)
    source, role = pytorch_source(graph)
    _, load, pick = SOURCES[role]
    loaded = {} if loaded is None else loaded
    if (load, source) not in loaded:
        loaded[load, source] = load(source)
    return pick(loaded[load, source], graph.name)
