"""Model kinds: detection in registry order, default backends from the backend entries, and one
clear line when a model and a backend do not go together."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_models import make_tiny

from edgesr.errors import EdgesrError
from edgesr.model_kinds import (
    KINDS,
    SD_GRAPHS,
    backends_for,
    baseline_backend,
    checkpoint_backends,
    detect_kind,
    resolve,
)
from edgesr.models.detect import ARCHITECTURES, purpose_of
from edgesr.pipeline import open_runtime
from edgesr.runtimes import registry
from edgesr.upscaler import Upscaler


@pytest.fixture
def sd_folder(tmp_path):
    folder = tmp_path / "sd"
    folder.mkdir()
    for name in SD_GRAPHS:
        (folder / name).write_bytes(b"")
    return folder


def test_kinds_are_tried_in_order_and_the_last_takes_anything(tmp_path, sd_folder):
    assert [k.name for k in KINDS] == ["sd-x4", "sr3-denoiser", "upscaler"]
    assert detect_kind(sd_folder)[0].name == "sd-x4"
    assert detect_kind(tmp_path / "any.bin")[0].name == "upscaler"
    assert backends_for("sd-x4") == ["sd-upscaler", "sd-upscaler-openvino",
                                     "sd-upscaler-tensorrt", "sd-upscaler-coreml",
                                     "sd-upscaler-torch"]
    assert backends_for("sr3-denoiser") == ["sr3", "sr3-openvino", "sr3-tensorrt",
                                            "sr3-coreml", "sr3-torch"]
    assert [baseline_backend(k.name) for k in KINDS] == ["sd-upscaler-torch", "sr3-torch",
                                                         "torch"]


@pytest.mark.parametrize(("name", "backend"), [
    ("m.onnx", "onnxruntime"), ("m.xml", "openvino"), ("m.plan", "tensorrt"),
    ("m.engine", "tensorrt"), ("m.mlpackage", "coreml")])
def test_default_backend_by_file_type(tmp_path, name, backend):
    path = tmp_path / name
    path.write_bytes(b"not read")  # an unreadable .onnx is no denoiser; its backend says why
    assert resolve(path) == (path, backend)


def _not_installed(monkeypatch, name):
    monkeypatch.setitem(registry.BACKENDS, name, replace(registry.BACKENDS[name],
                                                         requires=("edgesr_no_such_module",)))


def test_checkpoints_default_to_the_fastest_exact_backend_installed(tmp_path, monkeypatch):
    """By the entries' declared ``default_rank``: OpenVINO, else ONNX Runtime (both on the
    checkpoint's cached ONNX export), else torch; the output stays within 1e-4 of torch FP32."""
    path = tmp_path / "m.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, path)
    ranked = [b for b in ("openvino", "onnxruntime", "torch") if registry.entry(b).installed]
    assert checkpoint_backends(path) == ranked
    model, backend = resolve(path)
    assert backend == ranked[0] and model.suffix == (".pth" if backend == "torch" else ".onnx")
    assert resolve(path, device="CPU")[1] == ranked[0]
    assert resolve(path, device="cuda") == (path, "torch")  # ranked on CPUs: a GPU runs torch
    image = np.random.default_rng(0).random((20, 12, 3), np.float32)
    outputs = {}
    for name in (None, "torch"):
        with open_runtime(str(path), name) as runtime:
            outputs[runtime.name] = Upscaler(runtime, tile=0).upscale(image)
    assert set(outputs) == {ranked[0], "torch"}
    assert np.abs(outputs[ranked[0]] - outputs["torch"]).max() <= 1e-4
    _not_installed(monkeypatch, "openvino")
    assert resolve(path)[1] == ("onnxruntime" if "onnxruntime" in ranked else "torch")
    _not_installed(monkeypatch, "onnxruntime")
    assert resolve(path) == (path, "torch")


def test_sd_folder_runs_on_sd_upscaler_only(sd_folder):
    assert resolve(sd_folder) == (sd_folder, "sd-upscaler")
    with pytest.raises(EdgesrError, match="a Stable Diffusion x4 export folder; it runs on "
                       "--backend sd-upscaler or sd-upscaler-openvino or sd-upscaler-tensorrt "
                       "or sd-upscaler-coreml or sd-upscaler-torch, not 'torch'"):
        resolve(sd_folder, "torch")
    with pytest.raises(EdgesrError, match="--backend sr3 needs an SR3 denoiser"):
        resolve(sd_folder, "sr3")
    (sd_folder / SD_GRAPHS[1]).unlink()
    with pytest.raises(EdgesrError, match="vae_decoder.onnx is missing"):
        resolve(sd_folder)


def test_mismatched_files_and_backends(tmp_path):
    plan, onnx = tmp_path / "m.plan", tmp_path / "m.onnx"
    for path in (plan, onnx):
        path.write_bytes(b"")
    with pytest.raises(EdgesrError, match="a tensorrt engine; it runs on --backend tensorrt, "
                       "not 'openvino'"):
        resolve(plan, "openvino")
    with pytest.raises(EdgesrError, match=r"an ONNX model needs an ONNX backend \(onnxruntime, "
                       r"openvino, tensorrt\), not 'coreml'"):
        resolve(onnx, "coreml")
    with pytest.raises(EdgesrError, match="--backend sd-upscaler needs a Stable Diffusion x4 "
                       "export folder"):
        resolve(onnx, "sd-upscaler")
    with pytest.raises(EdgesrError, match="unknown backend 'tflite'"):
        resolve(onnx, "tflite")


def test_architecture_purpose_replaces_a_denoiser_list():
    assert {spec.name: spec.purpose for spec in ARCHITECTURES} == {
        "SR3": "denoiser", "RRDBNet": "upscaler", "SRVGGNetCompact": "upscaler"}
    assert purpose_of("SR3") == "denoiser" and purpose_of("unknown") == "upscaler"
