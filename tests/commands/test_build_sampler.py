"""``edgesr build -b SAMPLER_BACKEND`` on the tiny SD x4 and SR3 models: every graph built into
the engine cache as the entries the sampler opens (a later upscale builds nothing), stdout one
engine path a line (or one JSON document), ``-o DIR`` a folder that runs without the cache,
options the sampler builds do not take refused in one line; TensorRT skipped without a GPU."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image
from tiny_models import export_tiny_diffusion

from edgesr.cli import main
from edgesr.diffusion import openvino_sessions
from edgesr.imageio import read_image

pytest.importorskip("openvino", reason="openvino is not installed: pip install openvino")
pytest.importorskip("diffusers", reason="diffusers is not installed: "
                    "pip install 'edgesr[diffusion]'")

UPSCALE = {"sd": ["--steps", "2"], "sr3": ["--scale", "2"]}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The tiny SD x4 export (``sd/``), its diffusers source (``src/``), the tiny SR3 export
    (``sr3.onnx``) and checkpoint (``sr3_gen.pth``), and a small image."""
    root = export_tiny_diffusion(tmp_path_factory.mktemp("build"))
    pixels = smooth_image(np.random.default_rng(5), 12, 16)
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(root / "in.png")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh engine cache (the default one, where upscale looks)."""
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "engines"


def _refuse(*_args):
    raise AssertionError("built an IR instead of reusing one")


def _upscale(workspace: Path, model: Path, backend: str, kind: str, out: Path) -> np.ndarray:
    assert main(["upscale", str(workspace / "in.png"), "-m", str(model), "-b", backend, "-o",
                 str(out), "--tile", "0", "--bit-depth", "16", "-q", *UPSCALE[kind]]) == 0
    return read_image(out).pixels


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_sd_build_is_what_upscale_opens(workspace, cache, capfd, monkeypatch, precision):
    assert main(["build", str(workspace / "sd"), "-b", "sd-upscaler-openvino",
                 "-p", precision]) == 0
    captured = capfd.readouterr()
    paths = captured.out.splitlines()
    assert len(paths) == 2 and all(Path(p).is_file() and Path(p).name == "model.xml"
                                   for p in paths)
    assert all(Path(p).is_relative_to(cache / "sd-upscaler-openvino") for p in paths)
    weights = "fp16" if precision == "fp16" else "fp32"  # the bf16 hint compiles an FP32 IR
    assert f"unet.onnx -> {weights} dynamic for any device (built in" in captured.err
    assert f"-b sd-upscaler-openvino:{precision}" in captured.err
    monkeypatch.setattr(openvino_sessions, "build", _refuse)
    _upscale(workspace, workspace / "sd", f"sd-upscaler-openvino:{precision}", "sd",
             workspace / f"sd-{precision}.png")


def test_sr3_checkpoint_build_is_what_upscale_opens(workspace, cache, capfd, monkeypatch):
    checkpoint = workspace / "sr3_gen.pth"
    assert main(["build", str(checkpoint), "-b", "sr3-openvino", "-p", "fp32", "--json"]) == 0
    doc = json.loads(capfd.readouterr().out)
    assert [e["built"] for e in doc["engines"]] == [True] and doc["model"].endswith(".onnx")
    monkeypatch.setattr(openvino_sessions, "build", _refuse)
    _upscale(workspace, checkpoint, "sr3-openvino:fp32", "sr3", workspace / "sr3-ckpt.png")


def test_json_document_and_cache_hit(workspace, cache, capfd):
    args = ["build", str(workspace / "sd"), "-b", "sd-upscaler-openvino", "-p", "fp32"]
    assert main(args) == 0
    first = capfd.readouterr().out.splitlines()
    assert main([*args, "--json"]) == 0
    captured = capfd.readouterr()
    doc = json.loads(captured.out)
    assert doc["model"] == str(workspace / "sd") and doc["backend"] == "sd-upscaler-openvino"
    assert [e["graph"] for e in doc["engines"]] == ["unet.onnx", "vae_decoder.onnx"]
    assert doc["paths"] == first and [e["built"] for e in doc["engines"]] == [False, False]
    assert all(e["cache_entry"] == e["path"] and e["profile"] == "dynamic"
               for e in doc["engines"])
    assert captured.err.count("(cached)") == 2


def test_output_folder_runs_without_the_cache(workspace, cache, capfd, monkeypatch, tmp_path):
    reference = _upscale(workspace, workspace / "sd", "sd-upscaler-openvino:fp16", "sd",
                         tmp_path / "ref.png")
    deploy = tmp_path / "deploy"
    assert main(["build", str(workspace / "sd"), "-b", "sd-upscaler-openvino", "-p", "fp16",
                 "-o", str(deploy)]) == 0
    assert capfd.readouterr().out.splitlines() == [str(deploy / "unet.xml"),
                                                   str(deploy / "vae_decoder.xml")]
    assert sorted(p.name for p in deploy.iterdir()) == [
        "low_res_scheduler", "model_index.json", "prompt_embeds.npy", "scheduler", "unet.bin",
        "unet.onnx", "unet.xml", "vae_decoder.bin", "vae_decoder.onnx", "vae_decoder.xml"]
    shutil.rmtree(cache)  # the folder needs no cache
    monkeypatch.setattr(openvino_sessions, "build", _refuse)
    out = _upscale(workspace, deploy, "sd-upscaler-openvino:fp16", "sd", tmp_path / "out.png")
    np.testing.assert_array_equal(out, reference)  # the same IRs ran
    assert not cache.exists()


def test_sr3_output_folder_names_the_graph_after_the_checkpoint(workspace, cache, capfd,
                                                                tmp_path):
    deploy = tmp_path / "sr3"
    assert main(["build", str(workspace / "sr3_gen.pth"), "-b", "sr3-openvino", "-p", "fp16",
                 "-o", str(deploy)]) == 0
    assert capfd.readouterr().out == f"{deploy / 'sr3_gen.xml'}\n"
    assert sorted(p.name for p in deploy.iterdir()) == ["sr3_gen.bin", "sr3_gen.onnx",
                                                        "sr3_gen.xml"]
    assert main(["info", str(deploy / "sr3_gen.onnx")]) == 0
    assert "sr3_gen.xml: run by sr3-openvino" in capfd.readouterr().out


def test_info_lists_the_engines_beside_the_graphs(workspace, cache, capfd, tmp_path):
    deploy = tmp_path / "deploy"
    assert main(["build", str(workspace / "sd"), "-b", "sd-upscaler-openvino", "-p", "fp32",
                 "-o", str(deploy)]) == 0
    capfd.readouterr()
    assert main(["info", str(deploy)]) == 0
    out = capfd.readouterr().out
    assert "unet.xml: run by sd-upscaler-openvino" in out
    assert "vae_decoder.xml: run by sd-upscaler-openvino" in out
    assert f"pytorch_source: {(workspace / 'src').resolve()} (there" in out
    assert main(["info", str(workspace / "sd")]) == 0
    assert "none (the sampler backends build theirs into the engine cache)" in \
        capfd.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "int8"], "backend 'sd-upscaler-openvino' has no precision option 'int8'"),
    (["--device", "CPU"], "sd-upscaler-openvino builds take no --device"),
    (["--batch", "2"], "sd-upscaler-openvino builds take no --batch"),
    (["--tile", "32"], "sd-upscaler-openvino builds take no --tile"),
    (["-p", "fp16", "--calib", "c.npz"], "INT8 diffusion IRs come from edgesr quantize"),
    (["-o", "x.xml"], "a diffusion model's engines go into a folder"),
])
def test_refuses_what_the_sampler_build_does_not_take(workspace, cache, capsys, args, message):
    code = main(["build", str(workspace / "sd"), "-b", "sd-upscaler-openvino", *args])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_a_diffusers_folder_is_told_to_export_first(workspace, cache, capsys):
    assert main(["build", str(workspace / "src"), "-b", "sd-upscaler-openvino"]) == 1
    err = capsys.readouterr().err
    assert "a diffusers folder; the samplers run its export: edgesr export" in err
    assert len(err.strip().splitlines()) == 1


def test_output_never_replaces_someone_elses_folder(workspace, cache, capsys, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["build", str(workspace / "sd"), "-b", "sd-upscaler-openvino", "-p", "fp32",
                 "-o", str(tmp_path / "mine")]) == 1
    assert "holds other files (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_tensorrt_build_options_are_the_samplers():
    from edgesr.diffusion.engines import sampler_options
    from edgesr.diffusion.tensorrt_sessions import TensorRTSessionOptions

    default = sampler_options("sd-upscaler-tensorrt", "fp16", {})
    assert default == TensorRTSessionOptions(precision="fp16").build_options()
    assert default.profile.label == "b1-2-2_16x16-64x64-128x128"
    given = sampler_options("sr3-tensorrt", "fp32", {"max_tile": 256, "batch": 1,
                                                     "device": "1", "workspace_mb": 512})
    assert given == TensorRTSessionOptions(precision="fp32", max_latent=256, max_batch=1, gpu=1,
                                           workspace_mb=512).build_options()
    fixed = sampler_options("sd-upscaler-tensorrt", "fp16", {"tile": 32})
    assert fixed.profile.label == "b1-2-2_32x32-32x32-32x32"


def test_tensorrt_build_without_tensorrt_is_one_line(workspace, cache, capsys):
    from edgesr.runtimes.tensorrt_build import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are here: test_tensorrt_build_is_what_upscale_opens "
                    "runs the build")
    assert main(["build", str(workspace / "sd"), "-b", "sd-upscaler-tensorrt"]) == 1
    err = capsys.readouterr().err
    assert "tensorrt" in err.lower() and len(err.strip().splitlines()) == 1


def test_tensorrt_build_is_what_upscale_opens(workspace, cache, capfd, monkeypatch):
    from edgesr.runtimes.tensorrt_build import unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"TensorRT engines build on an NVIDIA GPU with TensorRT: {reason}")
    from edgesr.diffusion import tensorrt_sessions

    assert main(["build", str(workspace / "sd"), "-b", "sd-upscaler-tensorrt", "-p", "fp16",
                 "--json"]) == 0
    doc = json.loads(capfd.readouterr().out)
    assert [e["profile"] for e in doc["engines"]] == ["b1-2-2_16x16-64x64-128x128"] * 2
    monkeypatch.setattr(tensorrt_sessions, "build", _refuse)
    _upscale(workspace, workspace / "sd", "sd-upscaler-tensorrt:fp16", "sd",
             workspace / "sd-trt.png")
