"""CoreML packages of the samplers through the engine cache (``edgesr build -b sd-upscaler-coreml``
/ ``sr3-coreml``): traced from the PyTorch source the export recorded, validated by spec here,
opened by the sessions from the cache without a rebuild; a missing or changed source is one
line. Prediction needs macOS (skipped elsewhere, with the reason)."""

import json
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import make_tiny_denoiser, write_tiny_sd_x4

from edgesr.cli import main
from edgesr.diffusion import coreml_sessions
from edgesr.diffusion.coreml_sessions import package_for

pytest.importorskip("coremltools", reason="coremltools is not installed: pip install coremltools")
pytest.importorskip("diffusers", reason="diffusers is not installed: "
                    "pip install 'edgesr[diffusion]'")
from edgesr.export.diffusion_coreml import MAX_LATENT, read_package_io  # noqa: E402

ON_MACOS = sys.platform == "darwin"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny SD x4 (``src/`` exported to ``sd/``) and SR3 (``sr3_gen.pth`` exported to
    ``sr3.onnx``), no packages beside them."""
    root = tmp_path_factory.mktemp("coreml-build")
    write_tiny_sd_x4(root / "src")
    assert main(["export", str(root / "src"), "-o", str(root / "sd")]) == 0
    np.save(root / "sd" / "prompt_embeds.npy",
            np.random.default_rng(0).standard_normal((2, 8, 8)).astype(np.float32))
    torch.save({"denoise_fn." + k: v for k, v in make_tiny_denoiser("sr3").state_dict().items()},
               root / "sr3_gen.pth")
    assert main(["export", str(root / "sr3_gen.pth"), "-o", str(root / "sr3.onnx")]) == 0
    return root


@pytest.fixture(scope="module")
def built(exported, tmp_path_factory):
    """``edgesr build sd/ -b sd-upscaler-coreml -p fp16 --json`` into a cache of its own."""
    import contextlib
    import io

    cache = tmp_path_factory.mktemp("coreml-cache") / "engines"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["build", str(exported / "sd"), "-b", "sd-upscaler-coreml", "-p", "fp16",
                     "--cache", str(cache), "--json"]) == 0
    return json.loads(stdout.getvalue()), cache


def _refuse(*_args):
    raise AssertionError("traced a package instead of reusing one")


def test_build_writes_each_graphs_package_into_the_cache(built):
    doc, cache = built
    assert [e["graph"] for e in doc["engines"]] == ["unet.onnx", "vae_decoder.onnx"]
    unet, vae = (read_package_io(path) for path in doc["paths"])
    multiple = int(unet.metadata["edgesr.size_multiple"])
    assert unet.inputs["sample"] == ("float32", ((1, 2), (7, 7), (multiple, MAX_LATENT),
                                                 (multiple, MAX_LATENT)))
    assert unet.inputs["class_labels"] == ("int32", ((1, 2),))
    assert unet.outputs == ("out_sample",) and unet.compute_precision == "fp16"
    assert vae.inputs == {"latent_sample": ("float32", ((1, 2), (4, 4), (1, MAX_LATENT),
                                                        (1, MAX_LATENT)))}
    assert vae.metadata["edgesr.role"] == "vae_decoder"
    assert all(e["profile"] == f"b1-2_upto{MAX_LATENT}" and e["device"] == "any"
               for e in doc["engines"])
    assert all(path.startswith(str(cache / "sd-upscaler-coreml")) for path in doc["paths"])


def test_sessions_open_the_built_packages_without_tracing(built, exported, monkeypatch):
    doc, cache = built
    monkeypatch.setattr(coreml_sessions, "build", _refuse)
    for graph, path in zip(("unet.onnx", "vae_decoder.onnx"), doc["paths"], strict=True):
        assert str(package_for("sd-upscaler-coreml", exported / "sd" / graph, "fp16",
                               cache=_cache(cache))) == path
        assert str(package_for("sd-upscaler-coreml", exported / "sd" / graph, None,
                               cache=_cache(cache))) == path  # fp16 is the cache's default


def _cache(root):
    from edgesr.runtimes.engine_cache import EngineCache

    return EngineCache(root)


def test_output_folder_holds_the_packages_beside_the_graphs(built, exported, tmp_path, capfd):
    _, cache = built
    deploy = tmp_path / "deploy"
    assert main(["build", str(exported / "sd"), "-b", "sd-upscaler-coreml", "-p", "fp16",
                 "--cache", str(cache), "-o", str(deploy)]) == 0
    assert capfd.readouterr().out.splitlines() == [str(deploy / "unet.mlpackage"),
                                                   str(deploy / "vae_decoder.mlpackage")]
    assert read_package_io(deploy / "unet.mlpackage").metadata["edgesr.role"] == "unet"
    assert main(["info", str(deploy)]) == 0
    assert "unet.mlpackage: run by sd-upscaler-coreml" in capfd.readouterr().out
    # a package beside the graph is what the session opens
    assert package_for("sd-upscaler-coreml", deploy / "unet.onnx", "fp16") == \
        deploy / "unet.mlpackage"


def test_info_describes_a_built_package(built, capfd):
    doc, _ = built
    assert main(["info", doc["paths"][0]]) == 0
    out = capfd.readouterr().out
    assert "format: CoreML package (unet of a diffusion model)" in out
    assert "name class_labels, type int32, ranges [(1, 2)]" in out
    assert "backend: sd-upscaler-coreml" in out  # the engine-cache key


def test_a_moved_source_is_one_line(exported, tmp_path, capsys):
    write_tiny_sd_x4(tmp_path / "src")
    assert main(["export", str(tmp_path / "src"), "-o", str(tmp_path / "sd")]) == 0
    shutil.rmtree(tmp_path / "src")
    capsys.readouterr()
    assert main(["build", str(tmp_path / "sd"), "-b", "sd-upscaler-coreml",
                 "--cache", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert f"its PyTorch source {(tmp_path / 'src').resolve()} is not there" in err
    assert "edgesr export SOURCE -o OUTPUT --coreml fp16" in err
    assert len(err.strip().splitlines()) == 1


def test_a_changed_source_is_one_line(exported, tmp_path, capsys):
    checkpoint = tmp_path / "sr3_gen.pth"
    shutil.copy(exported / "sr3_gen.pth", checkpoint)
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "sr3.onnx")]) == 0
    torch.save(make_tiny_denoiser("sr3", seed=1).state_dict(), checkpoint)
    capsys.readouterr()
    assert main(["build", str(tmp_path / "sr3.onnx"), "-b", "sr3-coreml", "-p", "fp32",
                 "--cache", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "is not the one it was exported from" in err and "--coreml fp32" in err
    assert len(err.strip().splitlines()) == 1


def test_an_export_without_a_recorded_source_is_one_line(exported, tmp_path, capsys):
    import onnx

    sd = tmp_path / "sd"
    shutil.copytree(exported / "sd", sd)
    for name in ("unet.onnx", "vae_decoder.onnx"):
        proto = onnx.load(str(sd / name))
        kept = [p for p in proto.metadata_props if p.key != "edgesr.source"]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
        onnx.save(proto, str(sd / name))
    assert main(["build", str(sd), "-b", "sd-upscaler-coreml", "--cache",
                 str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "its export records no PyTorch source" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not ON_MACOS, reason="CoreML prediction needs macOS; the packages are "
                    "validated by spec here")
def test_upscale_runs_the_cache_packages(built, exported, tmp_path, monkeypatch):
    _, cache = built
    monkeypatch.setenv("EDGESR_CACHE", str(cache.parent))
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(tmp_path / "in.png")
    monkeypatch.setattr(coreml_sessions, "build", _refuse)
    assert main(["upscale", str(tmp_path / "in.png"), "-m", str(exported / "sd"), "-b",
                 "sd-upscaler-coreml:fp16", "-o", str(tmp_path / "out.png"), "--steps", "2",
                 "--tile", "0", "-q"]) == 0
