"""What ``edgesr info`` says about each kind of file edgesr reads or writes: checkpoints, ncnn
models, ONNX models, OpenVINO IRs (with the compiled model kept beside them), TensorRT plans,
CoreML packages and diffusion model folders.

``DESCRIBERS`` maps a suffix to the function that describes such a file as a JSON-able dict
(``describe`` dispatches on it; a folder without a describer of its own is a diffusion model);
``format_description`` renders one as ``key: value`` lines. An artifact inside an engine-cache
entry also shows the entry's key (backend, version, precision, shape profile, device).
"""

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgesr.errors import CheckpointError, EdgesrError, first_line

Description = dict[str, Any]


def describe_checkpoint(path: Path) -> Description:
    """A PyTorch checkpoint (or an ncnn model): the architecture edgesr detects in it."""
    from edgesr.models import load_model

    desc = load_model(path)
    return {"model": desc.name, "file": str(desc.source), "sha256": desc.source_sha256,
            "scale": desc.scale, "channels": f"{desc.in_channels} -> {desc.out_channels}",
            "size_multiple": desc.size_multiple, "hyperparameters": desc.hyperparameters}


def describe_ncnn(path: Path) -> Description:
    """An ncnn ``.param`` + ``.bin``: its layers and blobs, then the architecture edgesr detects
    (which needs PyTorch; without it, said so)."""
    lines = path.read_text(errors="replace").split("\n")
    try:
        layers, blobs = (int(v) for v in lines[1].split()[:2])
    except (IndexError, ValueError):
        raise CheckpointError(f"{path}: not an ncnn .param file (no layer and blob count)") \
            from None
    rows = [line.split() for line in lines[2:] if line.strip()]
    weights = path.with_suffix(".bin")
    doc: Description = {
        "format": "ncnn", "file": str(path), "layers": layers, "blobs": blobs,
        "inputs": [row[1] for row in rows if row[0] == "Input" and len(row) > 1],
        "layer_types": dict(Counter(row[0] for row in rows).most_common()),
        "weights": f"{weights.name}, {weights.stat().st_size} bytes" if weights.is_file()
        else f"{weights.name} missing"}
    try:
        doc["architecture"] = describe_checkpoint(path)
    except ModuleNotFoundError as exc:
        doc["architecture"] = f"not detected (needs {exc.name}: pip install 'edgesr[export]')"
    except EdgesrError as exc:  # an ncnn model of an architecture edgesr does not know
        doc["architecture"] = f"not detected ({first_line(exc)})"
    return doc


def _onnx_value(value) -> Description:
    import onnx

    tensor = value.type.tensor_type
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
            for d in tensor.shape.dim]
    return {"name": value.name, "type": onnx.TensorProto.DataType.Name(tensor.elem_type).lower(),
            "shape": dims, "dynamic_axes": [i for i, d in enumerate(dims)
                                            if not isinstance(d, int)]}


def describe_onnx(path: Path) -> Description:
    """An ONNX model: inputs and outputs (dynamic axes by name), opsets, the weights' precision
    (int8 when it has Q/DQ nodes, fp16 with FP16 initializers, else fp32) and edgesr metadata."""
    import onnx

    from edgesr.export.specs import read_onnx_metadata

    metadata = read_onnx_metadata(path)  # checks the file and its external data first
    proto = onnx.load(str(path), load_external_data=False)
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    types = Counter(onnx.TensorProto.DataType.Name(t.data_type).lower() for t in graph.initializer)
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
    precision = "int8" if qdq else "fp16" if types.get("float16") else "fp32"
    data = path.with_name(path.name + ".data")
    return {"format": "ONNX", "file": str(path), "size_bytes": path.stat().st_size,
            "external_data": f"{data.name}, {data.stat().st_size} bytes" if data.is_file()
            else None,
            "opset": {imp.domain or "ai.onnx": imp.version for imp in proto.opset_import},
            "inputs": [_onnx_value(v) for v in graph.input if v.name not in initializers],
            "outputs": [_onnx_value(v) for v in graph.output],
            "weight_precision": precision, "qdq_nodes": qdq, "initializers": dict(types),
            "nodes": len(graph.node), "metadata": metadata,
            **({"engines_beside": _engines_beside(path, "sr3-denoiser")}
               if metadata.get("role") == "denoiser" else {})}


def _engines_beside(graph: Path, kind: str) -> dict[str, str] | str:
    """The engines beside diffusion graph ``graph`` (``edgesr build ... -o DIR``, ``edgesr
    export --coreml``, ``edgesr quantize``), by file name: the sampler backends of ``kind``
    that open them before the engine cache."""
    from edgesr.runtimes.registry import entries

    found: dict[str, list[str]] = {}
    for name, backend in entries().items():
        if kind in backend.kinds and backend.engine is not None:
            beside = graph.with_suffix(Path(backend.engine.artifact).suffix)
            if beside.exists():
                found.setdefault(beside.name, []).append(name)
    return {file: f"run by {', '.join(names)}" for file, names in found.items()} or \
        "none (the sampler backends build theirs into the engine cache)"


def _ov_port(port) -> Description:
    shape = port.get_partial_shape()
    return {"name": port.get_any_name(), "type": port.get_element_type().get_type_name(),
            "shape": [d.get_length() if d.is_static else None for d in shape],
            "dynamic_axes": [i for i, d in enumerate(shape) if d.is_dynamic]}


def describe_ir(path: Path) -> Description:
    """An OpenVINO IR: inputs and outputs with element types, the weights' precision, the
    precision hint it records, edgesr's rt_info, and the compiled model kept beside it."""
    import openvino as ov

    from edgesr.runtimes import openvino_blob

    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: OpenVINO cannot read it: {first_line(exc)}") from None
    constants = Counter(op.get_element_type().get_type_name() for op in model.get_ops()
                        if op.get_type_name() == "Constant")
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    rt_info = {key: model.get_rt_info(["edgesr", key]).astype(str)
               for key in ("arch", "scale", "in_channels", "out_channels", "size_multiple",
                           "source_sha256", "ir_precision", "precision")
               if model.has_rt_info(["edgesr", key])}
    hint_key = ["runtime_options", "INFERENCE_PRECISION_HINT"]
    record = openvino_blob.read(path)
    compiled: Description | None = None
    if record is not None:
        why = openvino_blob.mismatch(core, path, record, str(record.get("device")),
                                     str(record.get("hint")), record.get("shape") or [])
        compiled = {**{k: record.get(k) for k in ("device", "device_name", "openvino", "hint",
                                                  "shape")},
                    "usable_here": not why, **({"why_not": why} if why else {})}
    weights = path.with_suffix(".bin")
    return {"format": "OpenVINO IR", "file": str(path),
            "weights": f"{weights.name}, {weights.stat().st_size} bytes" if weights.is_file()
            else f"{weights.name} missing",
            "inputs": [_ov_port(p) for p in model.inputs],
            "outputs": [_ov_port(p) for p in model.outputs],
            "weight_precision": "int8" if fake_quantize else "fp16" if constants.get("f16")
            else "fp32",
            "fake_quantize_ops": fake_quantize,
            "precision_hint": model.get_rt_info(hint_key).astype(str)
            if model.has_rt_info(hint_key) else None,
            "rt_info": rt_info, "compiled_model": compiled}


def describe_plan(path: Path) -> Description:
    """A TensorRT plan: what its sidecar (``<plan>.json``) records; the plan itself is only
    read by TensorRT on a GPU, so its layers are not listed."""
    sidecar = path.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else None
    except ValueError:
        meta = f"{sidecar.name} unreadable"
    return {"format": "TensorRT plan", "file": str(path), "size_bytes": path.stat().st_size,
            "metadata": meta if meta is not None else f"no {sidecar.name} beside it",
            "layers": "not read (a plan is deserialized by TensorRT on its GPU only)"}


def describe_mlpackage(path: Path) -> Description:
    """A CoreML ML program package: its spec (I/O, shape ranges, compute precision); a
    diffusion graph's (``edgesr export --coreml``, ``edgesr build -b sd-upscaler-coreml``)
    every input with its element type and (lower, upper) bound per axis."""
    from dataclasses import asdict

    from edgesr.export.diffusion_coreml import read_package_io
    from edgesr.export.diffusion_sources import SOURCES
    from edgesr.runtimes.coreml_convert import read_spec

    io = read_package_io(path)
    if io.metadata.get("edgesr.role") in SOURCES:
        return {"format": f"CoreML package ({io.metadata['edgesr.role']} of a diffusion model)",
                "file": str(path),
                "inputs": [{"name": name, "type": kind, "ranges": list(ranges)}
                           for name, (kind, ranges) in io.inputs.items()],
                "outputs": list(io.outputs), "compute_precision": io.compute_precision,
                "metadata": {k.removeprefix("edgesr."): v for k, v in io.metadata.items()}}
    return {"format": "CoreML package", "file": str(path), **asdict(read_spec(path))}


def describe_folder(folder: Path) -> Description:
    """An edgesr Stable Diffusion x4 export (its graphs, embeddings, schedulers) or a diffusers
    pipeline folder."""
    from edgesr.diffusion.sd_upscaler import EMBEDDINGS_FILE, GRAPHS, SCHEDULERS
    from edgesr.export.specs import read_onnx_metadata

    if all((folder / graph).is_file() for graph in GRAPHS):
        doc: Description = {"model": "Stable Diffusion x4 upscaler export (backend sd-upscaler)",
                            "folder": str(folder)}
        for graph in GRAPHS:
            meta = read_onnx_metadata(folder / graph)
            files = [folder / graph, folder / f"{graph}.data"]
            size = sum(f.stat().st_size for f in files if f.is_file())
            doc[graph] = (f"{meta.get('role')}, {size / 2**20:.1f} MiB, in "
                          f"{meta.get('in_channels')} -> out {meta.get('out_channels')} "
                          f"channels, size multiple {meta.get('size_multiple')}")
            doc[f"{graph} engines beside"] = _engines_beside(folder / graph, "sd-x4")
        source = read_onnx_metadata(folder / GRAPHS[0]).get("source")
        doc["pytorch_source"] = (f"{source} ({'there' if Path(source).exists() else 'missing'}"
                                 "; CoreML packages are traced from it)") if source else \
            "not recorded (CoreML packages: edgesr export SOURCE -o OUT --coreml fp16)"
        embeds = folder / EMBEDDINGS_FILE
        if embeds.is_file():
            import numpy as np

            doc[EMBEDDINGS_FILE] = (f"{list(np.load(embeds, mmap_mode='r').shape)} "
                                    "(negative, positive)")
        else:
            doc[EMBEDDINGS_FILE] = "missing (upscale needs --prompt-embeds)"
        for name in SCHEDULERS:
            doc[name] = _json_field(folder / name / "scheduler_config.json", "_class_name")
        return doc
    if (folder / "model_index.json").is_file():
        pipeline = _json_field(folder / "model_index.json", "_class_name")
        return {"model": f"diffusers {pipeline} folder", "folder": str(folder),
                "export it with": f"edgesr export {folder} -o OUT/"}
    raise CheckpointError(f"{folder}: a folder, but neither an edgesr Stable Diffusion x4 export "
                          "(unet.onnx + vae_decoder.onnx) nor a diffusers pipeline "
                          "(model_index.json)")


def _json_field(path: Path, key: str) -> str:
    """One field of a JSON file, or what is wrong with the file."""
    try:
        return str(json.loads(path.read_text())[key])
    except (OSError, ValueError, KeyError, TypeError):
        return f"missing or unreadable ({path.name})"


#: Suffix -> describer; every file edgesr reads or writes has one.
DESCRIBERS: dict[str, Callable[[Path], Description]] = {
    **{suffix: describe_checkpoint for suffix in (".pth", ".pt", ".ckpt", ".safetensors")},
    ".param": describe_ncnn,
    ".onnx": describe_onnx,
    ".xml": describe_ir,
    ".plan": describe_plan,
    ".engine": describe_plan,
    ".mlpackage": describe_mlpackage,
}


def describe(path: str | Path) -> Description:
    """Describe the artifact at ``path`` (see ``DESCRIBERS``), with its engine-cache key when
    it lies in an engine-cache entry."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: not found")
    describer = DESCRIBERS.get(path.suffix)
    if describer is None:
        if not path.is_dir():
            raise EdgesrError(f"{path}: edgesr describes {', '.join(sorted(DESCRIBERS))} files "
                              "and diffusion model folders")
        describer = describe_folder
    doc = describer(path)
    manifest = path.parent / "manifest.json"
    try:
        key = json.loads(manifest.read_text()).get("key") if manifest.is_file() else None
    except (OSError, ValueError, AttributeError):
        key = None
    if isinstance(key, dict):
        doc["engine_cache_key"] = key
    return doc


def format_description(doc: Description, indent: int = 0) -> str:
    """``key: value`` lines; nested dicts indented, lists of dicts one ``- `` line each."""
    pad = " " * indent
    lines = []
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.append(format_description(value, indent + 2))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{key}:")
            lines.extend(f"{pad}  - " + ", ".join(f"{k} {v}" for k, v in item.items())
                         for item in value)
        else:
            lines.append(f"{pad}{key}: {value}")
    return "\n".join(lines)
