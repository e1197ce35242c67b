"""Export multi-input diffusion graphs to ONNX, each checked against PyTorch before it is kept.

A diffusion upscaler is no image-in, image-out graph: its UNet takes the noisy sample, a noise
level or timestep and, for Stable Diffusion, text embeddings. Each graph is one frozen
``GraphSpec`` (after optimum's per-model ONNX configs): tensor names, named dynamic axes, a
sample-input factory, trace and parity sizes, tolerance and metadata. ``export_graphs`` traces
each graph with ``onnx_export``'s exporter, writes it into a staging folder beside the target
(weights as external data past ``EXTERNAL_DATA_BYTES``, under the 2 GiB protobuf limit, streamed
one tensor at a time), runs ``onnx.checker`` and ONNX Runtime at sizes other than the trace sizes
against PyTorch, and moves the files into place only when every graph passes: a failure leaves
nothing behind. PyTorch's outputs for the parity check come first, so that with
``release_weights`` a module's weights are gone before ONNX Runtime loads its graph: the real
SD x4 UNet's export holds about one copy of its weights, not four.
"""

import contextlib
import gc
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import torch
from torch import nn

from edgesr import __version__
from edgesr.errors import ExportError, first_line
from edgesr.export.onnx_export import (
    PROTOBUF_LIMIT,
    check_graph,
    compare_outputs,
    trace_to_ir,
    weight_bytes,
)
from edgesr.export.specs import MIN_OPSET, encode_metadata
from edgesr.fsutil import move_files, remove, replace_dir, temp_path
from edgesr.models.descriptor import ModelDescriptor

#: Graphs with more weight bytes than this keep them in ``<file>.data`` beside the .onnx file.
EXTERNAL_DATA_BYTES = 1_500_000_000
SPATIAL = ("height", "width")

Dims = Mapping[str, int]


@dataclass(frozen=True, kw_only=True)
class GraphSpec:
    """One graph of a diffusion model and how closely ONNX Runtime must match PyTorch.

    ``inputs``: tensor names, in ``forward`` order; ``output``: the one output's name;
    ``dynamic_axes``: tensor name ->
    {axis: dim name}; ``sample(dims, generator)``: the ``forward`` arguments for named dim sizes;
    ``trace_dims``/``parity_dims``: those sizes for the trace and the parity run (height and
    width rounded up to ``size_multiple``, and never both equal); ``peak``: the output's range,
    for PSNR; ``metadata``: edgesr metadata written into the file.
    """

    file: str
    inputs: tuple[str, ...]
    output: str
    dynamic_axes: Mapping[str, Mapping[int, str]]
    sample: Callable[[Dims, torch.Generator], tuple[torch.Tensor, ...]]
    trace_dims: Dims
    parity_dims: Dims
    size_multiple: int = 1
    atol: float = 1e-3
    min_psnr: float = 60.0
    peak: float = 1.0
    opset: int = MIN_OPSET
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.opset < MIN_OPSET:
            raise ExportError(f"{self.file}: opset {self.opset} is too old; edgesr exports "
                              f"opset >= {MIN_OPSET}")
        unknown = set(self.dynamic_axes) - {*self.inputs, self.output}
        if unknown:
            raise ExportError(f"{self.file}: dynamic axes for unknown tensors {sorted(unknown)}")
        if [self.dims(True)[k] for k in SPATIAL] == [self.dims(False)[k] for k in SPATIAL]:
            raise ExportError(f"{self.file}: the parity size must differ from the trace size")

    def dims(self, trace: bool) -> dict[str, int]:
        """The trace (or parity) dim sizes, height and width rounded up to ``size_multiple``."""
        m = self.size_multiple
        dims = self.trace_dims if trace else self.parity_dims
        return {k: -(-v // m) * m if k in SPATIAL else v for k, v in dims.items()}


@dataclass(frozen=True, kw_only=True)
class GraphReport:
    """What ``export_graphs`` wrote for one graph and how closely ONNX Runtime matched PyTorch.

    ``external_data``: the weights file beside ``path``, or None; ``size_bytes``: both files.
    """

    path: Path
    external_data: Path | None
    trace_dims: dict[str, int]
    parity_dims: dict[str, int]
    max_abs_diff: float
    psnr: float
    size_bytes: int
    seconds: float


def image_dims(size_multiple: int, **extra: int) -> tuple[dict[str, int], dict[str, int]]:
    """Default (trace, parity) dims: batch 1 at 2k x 2k, batch 2 at 3k x 5k, k = max(8, size
    multiple); ``extra`` dims (name=trace size) get trace size + 4 for the parity run."""
    k = max(8, size_multiple)
    trace = {"batch": 1, "height": 2 * k, "width": 2 * k, **extra}
    parity = {"batch": 2, "height": 3 * k, "width": 5 * k, **{n: v + 4 for n, v in extra.items()}}
    return trace, parity


def export_graphs(graphs: Sequence[tuple[nn.Module, GraphSpec]], target: str | Path, *,
                  folder: bool, external_data_bytes: int = EXTERNAL_DATA_BYTES,
                  extra_files: Mapping[str, bytes | None] | None = None,
                  release_weights: bool = False) -> list[GraphReport]:
    """Export every (module, spec) pair, checked, into ``target``: a folder (``folder=True``,
    created if missing) or, for one graph, the .onnx file ``target``. Returns one report per
    graph; raises ExportError, leaving ``target`` as it was, when any graph fails a check.

    ``extra_files``: folder-relative path -> bytes, staged and moved in with the graphs (None
    removes a stale copy), so a folder never holds graphs without the files that go with them.
    ``release_weights``: the modules are the export's to use up: each one's weights are freed
    (moved to the meta device) once its graph holds them, before ONNX Runtime loads the graph.
    """
    target = Path(target).absolute()
    extra_files = extra_files or {}
    if extra_files and not folder:
        raise ExportError(f"{target}: extra files need a folder target")
    if folder and target.exists() and not target.is_dir():
        raise ExportError(f"{target}: the output must be a folder, not a file")
    if not folder and (len(graphs) != 1 or graphs[0][1].file != target.name):
        raise ExportError(f"{target}: a file target takes one graph of that file name")
    stage = temp_path(target)
    missing = [p for p in stage.parents if not p.exists()]  # nearest first
    destination = target if folder else target.parent
    try:
        stage.mkdir(parents=True)
        reports = [_export_one(module, spec, stage, external_data_bytes, release_weights)
                   for module, spec in graphs]
        staged = _stage_extras(stage, extra_files)
        if folder and not target.exists():
            replace_dir(stage, target)
        else:
            _move_files(destination, reports)
            _move_extras(stage, destination, extra_files, staged)
        missing = []
        return [_relocate(report, destination) for report in reports]
    except OSError as exc:
        raise ExportError(f"{target}: cannot write the ONNX files ({exc.strerror or exc})"
                          ) from None
    finally:
        remove(stage)
        with contextlib.suppress(OSError):
            for parent in missing:  # folders made for a failed export
                parent.rmdir()


def _export_one(module: nn.Module, spec: GraphSpec, stage: Path, external_data_bytes: int,
                release_weights: bool) -> GraphReport:
    start = time.perf_counter()
    name = spec.file
    module = module.eval()
    nbytes = weight_bytes(module)
    external = nbytes > external_data_bytes
    if nbytes >= PROTOBUF_LIMIT and not external:
        raise ExportError(f"{name}: {nbytes / 2**30:.1f} GiB of weights exceed the 2 GiB limit "
                          "of a single-file ONNX model: keep them as external data")
    trace_dims, parity_dims = spec.dims(True), spec.dims(False)
    parity_args = spec.sample(parity_dims, torch.Generator().manual_seed(1))
    try:  # PyTorch's side of the parity check first: the module may go after the trace
        with torch.no_grad():
            ref = module(*parity_args).float().numpy()
    except Exception as exc:  # whatever the model raises; report one line
        raise ExportError(f"{name}: PyTorch cannot run the model at {parity_dims}: "
                          f"{first_line(exc)}") from exc
    args = spec.sample(trace_dims, torch.Generator().manual_seed(0))
    with warnings.catch_warnings():  # shape branches baked in: size_multiple keeps them valid
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = trace_to_ir(module, args, spec.opset,
                            {k: dict(v) for k, v in spec.dynamic_axes.items()}, "torchscript",
                            name, input_names=spec.inputs, output_names=(spec.output,))
    if release_weights:
        module.to("meta")  # the graph holds the tensors it needs; the rest go now
    model.doc_string = name
    model.metadata_props.update(encode_metadata(
        {**spec.metadata, "size_multiple": spec.size_multiple, "version": __version__}))
    path = stage / spec.file
    data = path.with_name(f"{spec.file}.data") if external else None
    proto = ir.to_proto(model) if data is None else None  # the weights copied into it
    if data is not None:  # one tensor at a time, straight from the graph's (PyTorch's) memory
        ir.save(model, path, external_data=data.name, size_threshold_bytes=1024)
        data = data if data.is_file() else None  # no tensor past the threshold
    del model
    gc.collect()  # the graph's nodes and values refer to each other: its weights go only now
    if proto is not None:
        onnx.save_model(proto, path)
        del proto
    if data is not None:
        data.chmod(path.stat().st_mode & 0o777)  # written private; match the graph
    check_graph(str(path), name)
    max_diff, psnr = _parity(spec, path, parity_args, ref, parity_dims, name)
    size = path.stat().st_size + (data.stat().st_size if data else 0)
    return GraphReport(path=path, external_data=data, trace_dims=trace_dims,
                       parity_dims=parity_dims, max_abs_diff=max_diff, psnr=psnr,
                       size_bytes=size, seconds=time.perf_counter() - start)


def _parity(spec: GraphSpec, path: Path, args: tuple[torch.Tensor, ...], ref: np.ndarray,
            dims: dict[str, int], name: str) -> tuple[float, float]:
    """Max abs diff and PSNR of ONNX Runtime (CPU) on ``args`` against PyTorch's ``ref``;
    ExportError past tolerance."""
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {n: a.numpy() for n, a in zip(spec.inputs, args, strict=True)}
        out = session.run([spec.output], feed)[0]
    except Exception as exc:  # onnxruntime's errors are not one class
        raise ExportError(f"{name}: ONNX Runtime cannot run the export: "
                          f"{first_line(exc)}") from None
    return compare_outputs(out, ref, atol=spec.atol, min_psnr=spec.min_psnr, peak=spec.peak,
                           context=f"{name}: ONNX", inputs=dims)


def _move_files(destination: Path, reports: list[GraphReport]) -> None:
    """Rename the staged files into ``destination``, each graph's weights before its graph; a
    weights file left by an earlier export of a graph now self-contained goes."""
    for report in reports:
        if report.external_data is None:
            (destination / f"{report.path.name}.data").unlink(missing_ok=True)
        staged = [f for f in (report.external_data, report.path) if f is not None]
        move_files((f, destination / f.name) for f in staged)


def _stage_extras(stage: Path, extra_files: Mapping[str, bytes | None]) -> list[str]:
    """Write the extra files into the staging folder; return the names written."""
    staged = []
    for name, data in extra_files.items():
        if data is not None:
            path = stage / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            staged.append(name)
    return staged


def _move_extras(stage: Path, destination: Path, extra_files: Mapping[str, bytes | None],
                 staged: list[str]) -> None:
    """Rename the staged extra files into ``destination``; remove those given as None."""
    move_files((stage / name, destination / name) for name in staged)
    for name in extra_files:
        if name not in staged:
            (destination / name).unlink(missing_ok=True)


def _relocate(report: GraphReport, destination: Path) -> GraphReport:
    data = report.external_data and destination / report.external_data.name
    return replace(report, path=destination / report.path.name, external_data=data)


def sr3_graph(descriptor: ModelDescriptor, file: str, opset: int = MIN_OPSET) -> GraphSpec:
    """The GraphSpec of an SR3 denoiser: ``x`` [B, 6, H, W] (upsampled low-res image, then the
    noisy image) and ``noise_level`` [B] -> ``noise`` [B, 3, H, W]. The checkpoint's noise
    schedule, when it held one, goes into the metadata as ``betas`` (a JSON list)."""
    channels = descriptor.in_channels
    betas = getattr(descriptor.model, "betas", None)

    def sample(dims: Dims, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        batch = dims["batch"]
        return (torch.randn(batch, channels, dims["height"], dims["width"], generator=gen),
                torch.rand(batch, generator=gen))

    trace, parity = image_dims(descriptor.size_multiple)
    spatial = {0: "batch", 2: "height", 3: "width"}
    return GraphSpec(
        file=file, inputs=("x", "noise_level"), output="noise",
        dynamic_axes={"x": spatial, "noise_level": {0: "batch"}, "noise": spatial},
        sample=sample, trace_dims=trace, parity_dims=parity,
        size_multiple=descriptor.size_multiple, opset=opset,
        metadata={"role": "denoiser", "arch": descriptor.architecture, "scale": descriptor.scale,
                  "in_channels": channels, "out_channels": descriptor.out_channels,
                  "source_sha256": descriptor.source_sha256,
                  "source": descriptor.source and str(Path(descriptor.source).resolve()),
                  "hyperparameters": descriptor.hyperparameters,
                  "betas": None if betas is None else json.dumps(betas.tolist())})


def export_sr3(descriptor: ModelDescriptor, output_path: str | Path, *, opset: int = MIN_OPSET,
               external_data_bytes: int = EXTERNAL_DATA_BYTES) -> GraphReport:
    """Export an SR3 denoiser to ``output_path`` (.onnx), checked against PyTorch at another
    size; dynamic batch, height and width (multiples of its size multiple)."""
    spec = sr3_graph(descriptor, Path(output_path).name, opset)
    return export_graphs([(descriptor.model, spec)], output_path, folder=False,
                         external_data_bytes=external_data_bytes)[0]
