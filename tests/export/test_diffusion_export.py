"""Diffusion exports: SR3 and a tiny Stable Diffusion x4 upscaler folder through ``edgesr
export``, checked, run in ONNX Runtime at sizes other than the trace size, with clean failures."""

import json
import shutil
import sys

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
from tiny_models import make_tiny_denoiser, write_tiny_sd_x4

from edgesr import __version__
from edgesr.cli import main
from edgesr.errors import CheckpointError, ExportError
from edgesr.export import diffusion_export
from edgesr.export.diffusion_export import GraphSpec, export_graphs, export_sr3
from edgesr.export.sd_upscaler import load_sd_upscaler
from edgesr.export.specs import read_onnx_metadata
from edgesr.fsutil import sha256_file
from edgesr.models import load_model

SD_REASON = "diffusers is not installed: pip install 'edgesr[diffusion]'"


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _run(path, feed: dict) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in feed.items()})[0]


def _export(capsys, *args) -> tuple[int, str, str]:
    code = main(["export", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def sr3(tmp_path_factory):
    """(checkpoint, module) of the tiny SR3, saved as Janspiry's GaussianDiffusion does."""
    model = make_tiny_denoiser("sr3")
    path = tmp_path_factory.mktemp("sr3") / "sr3_gen.pth"
    torch.save({"denoise_fn." + k: v for k, v in model.state_dict().items()}, path)
    return path, model


def _check_sr3(path, model, atol=1e-4):
    rng = torch.Generator().manual_seed(3)
    for shape in [(1, 6, 20, 12), (3, 6, 8, 28)]:
        feed = {"x": torch.randn(*shape, generator=rng),
                "noise_level": torch.rand(shape[0], generator=rng)}
        with torch.no_grad():
            ref = model(*feed.values()).numpy()
        np.testing.assert_allclose(_run(path, feed), ref, atol=atol)


def test_sr3_through_the_cli(tmp_path, capsys, sr3):
    checkpoint, model = sr3
    target = tmp_path / "out" / "sr3.onnx"
    code, out, _ = _export(capsys, checkpoint, "-o", target)
    assert code == 0 and _files(target.parent) == ["sr3.onnx"]
    assert "SR3 denoiser" in out and "multiples of 4" in out
    assert "parity vs PyTorch (batch 2, height 24, width 40): max abs diff" in out
    proto = onnx.load(str(target))
    onnx.checker.check_model(proto, full_check=True)
    assert [(i.name, _dims(i)) for i in proto.graph.input] == [
        ("x", ["batch", 6, "height", "width"]), ("noise_level", ["batch"])]
    assert _dims(proto.graph.output[0]) == ["batch", 3, "height", "width"]
    meta = read_onnx_metadata(target)
    assert meta["role"] == "denoiser" and meta["arch"] == "SR3" and meta["size_multiple"] == 4
    assert meta["source_sha256"] == sha256_file(checkpoint) and meta["version"] == __version__
    assert meta["hyperparameters"]["channel_mults"] == [1, 2, 2]
    assert "betas" not in meta  # the checkpoint holds no schedule: the runtime's default
    _check_sr3(target, model)


def test_sr3_external_data(tmp_path, sr3):
    checkpoint, model = sr3
    descriptor = load_model(checkpoint)
    descriptor.model.betas = torch.linspace(1e-4, 0.02, 7, dtype=torch.float64)
    report = export_sr3(descriptor, tmp_path / "sr3.onnx", external_data_bytes=0)
    assert _files(tmp_path) == ["sr3.onnx", "sr3.onnx.data"]
    assert report.external_data == tmp_path / "sr3.onnx.data"
    assert report.parity_dims["height"] != report.trace_dims["height"]
    assert report.size_bytes == sum(p.stat().st_size for p in tmp_path.iterdir())
    assert report.external_data.stat().st_mode == report.path.stat().st_mode
    assert report.path.stat().st_size < report.external_data.stat().st_size / 10
    onnx.checker.check_model(str(report.path), full_check=True)
    meta = read_onnx_metadata(report.path)
    assert meta["arch"] == "SR3"
    assert json.loads(meta["betas"]) == descriptor.model.betas.tolist()  # the schedule travels
    _check_sr3(report.path, model)


def test_weights_past_the_protobuf_limit_go_external(tmp_path, monkeypatch, sr3):
    monkeypatch.setattr(diffusion_export, "PROTOBUF_LIMIT", 1024)
    with pytest.raises(ExportError, match="exceed the 2 GiB limit of a single-file ONNX model"):
        export_sr3(load_model(sr3[0]), tmp_path / "a.onnx")
    report = export_sr3(load_model(sr3[0]), tmp_path / "b.onnx", external_data_bytes=1024)
    assert _files(tmp_path) == ["b.onnx", "b.onnx.data"]
    _check_sr3(report.path, sr3[1])


def _shift_bias(real):
    def patched(*args, **kwargs):
        model = real(*args, **kwargs)
        bias = next(v for v in reversed(list(model.graph.initializers.values()))
                    if v.name.endswith("bias"))
        bias.const_value = ir.tensor(bias.const_value.numpy() + 0.05, name=bias.name)
        return model
    return patched


def test_failed_parity_keeps_the_previous_export(tmp_path, monkeypatch, sr3):
    shifted = _shift_bias(diffusion_export.trace_to_ir)
    monkeypatch.setattr(diffusion_export, "trace_to_ir", shifted)
    target = tmp_path / "sr3.onnx"
    target.write_bytes(b"previous export")
    with pytest.raises(ExportError, match=r"sr3.onnx: ONNX parity check failed at input \{'batch"
                       r"': 2, 'height': 24, 'width': 40\}: max abs diff .* PSNR") as info:
        export_sr3(load_model(sr3[0]), target, external_data_bytes=0)
    assert "\n" not in str(info.value)
    assert _files(tmp_path) == ["sr3.onnx"] and target.read_bytes() == b"previous export"


class _Affine(torch.nn.Module):
    """A two-input graph for the core: ``x * gain[:, None, None, None] + 1``."""

    def forward(self, x, gain):
        return x * gain[:, None, None, None] + 1


class _BakedBranch(torch.nn.Module):
    """Branches on the input width: the trace keeps only the trace size's branch."""

    def forward(self, x, gain):
        return x * gain[:, None, None, None] * (2 if x.shape[-1] == 4 else 3)


def _affine_spec(file: str, **overrides) -> GraphSpec:
    def sample(dims, gen):
        return (torch.rand(dims["batch"], 2, dims["height"], dims["width"], generator=gen),
                torch.rand(dims["batch"], generator=gen))

    image = {0: "batch", 2: "height", 3: "width"}
    values = dict(file=file, inputs=("x", "gain"), output="y",
                  dynamic_axes={"x": image, "gain": {0: "batch"}, "y": image}, sample=sample,
                  trace_dims={"batch": 1, "height": 4, "width": 4},
                  parity_dims={"batch": 2, "height": 5, "width": 7}, metadata={"role": "test"})
    return GraphSpec(**{**values, **overrides})


def test_folder_export_is_all_or_nothing(tmp_path):
    graphs = [(_Affine(), _affine_spec("a.onnx")), (_Affine(), _affine_spec("b.onnx"))]
    reports = export_graphs(graphs, tmp_path / "out", folder=True)
    assert _files(tmp_path) == ["out"] and _files(tmp_path / "out") == ["a.onnx", "b.onnx"]
    assert [r.path for r in reports] == [tmp_path / "out" / n for n in ("a.onnx", "b.onnx")]
    assert reports[1].parity_dims == {"batch": 2, "height": 5, "width": 7}
    assert read_onnx_metadata(reports[0].path) == {"role": "test", "size_multiple": 1,
                                                   "version": __version__}
    (tmp_path / "out" / "a.onnx.data").write_bytes(b"stale weights")
    export_graphs(graphs[:1], tmp_path / "out", folder=True)  # a stale .data file goes
    assert _files(tmp_path / "out") == ["a.onnx", "b.onnx"]
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    graphs[1] = (_BakedBranch(), graphs[1][1])
    for target in (tmp_path / "out", tmp_path / "fresh"):
        with pytest.raises(ExportError, match="b.onnx: ONNX parity check failed"):
            export_graphs(graphs, target, folder=True)
    with pytest.raises(ExportError, match="b.onnx: ONNX parity check failed"):
        export_graphs(graphs[1:], tmp_path / "new" / "deeper" / "b.onnx", folder=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert _files(tmp_path) == ["out"]  # no staging folder, no folder made for the failure


def test_extra_files_move_in_with_the_graphs(tmp_path):
    graphs = [(_Affine(), _affine_spec("a.onnx"))]
    extras = {"sched/config.json": b"{}", "embeds.npy": b"E1"}
    export_graphs(graphs, tmp_path / "out", folder=True, extra_files=extras)
    assert (tmp_path / "out" / "sched" / "config.json").read_bytes() == b"{}"
    export_graphs(graphs, tmp_path / "out", folder=True,
                  extra_files={**extras, "embeds.npy": b"E2"})
    assert (tmp_path / "out" / "embeds.npy").read_bytes() == b"E2"
    failing = [(_BakedBranch(), _affine_spec("a.onnx"))]
    with pytest.raises(ExportError, match="parity check failed"):
        export_graphs(failing, tmp_path / "out", folder=True,
                      extra_files={**extras, "embeds.npy": b"E3"})
    assert (tmp_path / "out" / "embeds.npy").read_bytes() == b"E2"  # not without its graphs
    export_graphs(graphs, tmp_path / "out", folder=True, extra_files={"embeds.npy": None})
    assert _files(tmp_path / "out") == ["a.onnx", "sched"]  # None removes a stale copy
    with pytest.raises(ExportError, match="extra files need a folder"):
        export_graphs(graphs, tmp_path / "a.onnx", folder=False, extra_files=extras)


def test_graph_spec_and_target_checks(tmp_path):
    with pytest.raises(ExportError, match="parity size must differ"):
        _affine_spec("a.onnx", parity_dims={"batch": 2, "height": 4, "width": 4})
    with pytest.raises(ExportError, match="opset 16"):
        _affine_spec("a.onnx", opset=16)
    with pytest.raises(ExportError, match="unknown tensors"):
        _affine_spec("a.onnx", dynamic_axes={"z": {0: "batch"}})
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ExportError, match="must be a folder"):
        export_graphs([(_Affine(), _affine_spec("a.onnx"))], tmp_path / "file", folder=True)
    with pytest.raises(ExportError, match="one graph of that file name"):
        export_graphs([(_Affine(), _affine_spec("a.onnx"))], tmp_path / "b.onnx", folder=False)
    broken = _affine_spec("a.onnx", sample=lambda dims, gen: (torch.rand(2, 3),))
    with pytest.raises(ExportError, match=r"a.onnx: PyTorch cannot run the model at \{'batch"):
        export_graphs([(_Affine(), broken)], tmp_path / "a.onnx", folder=False)
    assert _files(tmp_path) == ["file"]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """A tiny diffusers x4 upscaler folder, written with ``save_pretrained``: (folder, unet,
    vae)."""
    pytest.importorskip("diffusers", reason=SD_REASON)
    folder = tmp_path_factory.mktemp("sd") / "sd-x4"
    unet, vae = write_tiny_sd_x4(folder)
    return folder, unet, vae


def test_sd_upscaler_through_the_cli(tmp_path, capsys, sd_folder):
    folder, unet, vae = sd_folder
    out_dir = tmp_path / "sdx4_onnx"
    code, out, _ = _export(capsys, folder, "-o", out_dir)
    assert code == 0 and _files(tmp_path) == ["sdx4_onnx"]
    assert _files(out_dir) == ["low_res_scheduler", "model_index.json", "scheduler",
                               "unet.onnx", "vae_decoder.onnx"]
    assert "unet.onnx: parity vs PyTorch (batch 2, height 24, width 40, sequence 11)" in out
    assert "vae_decoder.onnx: parity vs PyTorch (batch 2" in out
    assert "not exported: the text encoder" in out
    for name in ("unet.onnx", "vae_decoder.onnx"):
        onnx.checker.check_model(str(out_dir / name), full_check=True)
    meta = read_onnx_metadata(out_dir / "unet.onnx")
    assert {k: meta[k] for k in ("role", "arch", "scale", "latent_channels", "in_channels",
                                 "out_channels", "size_multiple", "vae_scaling_factor")} == {
        "role": "unet", "arch": "StableDiffusionUpscaler", "scale": 4, "latent_channels": 4,
        "in_channels": 7, "out_channels": 4, "size_multiple": 2, "vae_scaling_factor": 0.08333}
    assert meta["source_sha256"] == sha256_file(
        folder / "unet" / "diffusion_pytorch_model.safetensors")
    assert meta["hyperparameters"]["max_noise_level"] == 350
    vae_meta = read_onnx_metadata(out_dir / "vae_decoder.onnx")
    assert (vae_meta["role"], vae_meta["scale"], vae_meta["in_channels"]) == ("vae_decoder", 4, 4)

    rng = torch.Generator().manual_seed(5)
    for batch, h, w, seq in [(1, 12, 20, 3), (3, 18, 8, 9)]:
        feed = {"sample": torch.randn(batch, 7, h, w, generator=rng),
                "timestep": torch.randint(0, 1000, (batch,), generator=rng).float(),
                "encoder_hidden_states": torch.randn(batch, seq, 8, generator=rng),
                "class_labels": torch.randint(0, 351, (batch,), generator=rng)}
        with torch.no_grad():
            ref = unet(feed["sample"], feed["timestep"], feed["encoder_hidden_states"],
                       class_labels=feed["class_labels"]).sample.numpy()
        np.testing.assert_allclose(_run(out_dir / "unet.onnx", feed), ref, atol=1e-4)
    for batch, h, w in [(1, 5, 9), (3, 11, 6)]:
        latents = torch.randn(batch, 4, h, w, generator=rng) / 0.08333
        with torch.no_grad():
            ref = vae.decode(latents).sample.numpy()
        image = _run(out_dir / "vae_decoder.onnx", {"latent_sample": latents})
        assert image.shape == (batch, 3, 4 * h, 4 * w)
        np.testing.assert_allclose(image, ref, atol=1e-4)

    assert main(["info", str(out_dir)]) == 0  # the export folder, then its source
    described = capsys.readouterr().out
    assert "Stable Diffusion x4 upscaler export (backend sd-upscaler)" in described
    assert "unet.onnx: unet," in described and "in 7 -> out 4 channels" in described
    assert "prompt_embeds.npy: missing (upscale needs --prompt-embeds)" in described
    assert main(["info", str(folder)]) == 0
    assert "diffusers StableDiffusionUpscalePipeline folder" in capsys.readouterr().out
    (tmp_path / "other").mkdir()
    assert main(["info", str(tmp_path / "other")]) == 1
    assert "neither an edgesr Stable Diffusion x4 export" in capsys.readouterr().err


@pytest.mark.parametrize("breakage, message", [
    ("no_unet", "not a Stable Diffusion x4 upscaler folder (no unet/config.json)"),
    ("bad_config", "cannot load UNet2DConditionModel"),
    ("other_pipeline", "a StableDiffusionPipeline folder, not StableDiffusionUpscalePipeline"),
])
def test_sd_bad_folders_fail_cleanly(tmp_path, capsys, sd_folder, breakage, message):
    folder = shutil.copytree(sd_folder[0], tmp_path / "sd")
    if breakage == "no_unet":
        shutil.rmtree(folder / "unet")
    elif breakage == "bad_config":
        (folder / "unet" / "config.json").write_text('{"in_channels": 7,')
    else:
        (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    code, out, err = _export(capsys, folder, "-o", tmp_path / "out")
    assert code == 1 and out == "" and err.count("\n") == 1 and message in err
    assert _files(tmp_path) == ["sd"]


def test_sd_output_must_be_a_folder(tmp_path, capsys, sd_folder):
    code, _, err = _export(capsys, sd_folder[0], "-o", tmp_path / "sd.onnx")
    assert code == 1 and "give -o a folder" in err and _files(tmp_path) == []


def test_sd_without_diffusers_says_what_to_install(tmp_path, monkeypatch):
    for part in ("unet", "vae"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    with pytest.raises(ExportError, match=r"needs diffusers: pip install 'edgesr\[diffusion\]'"):
        load_sd_upscaler(tmp_path)


def test_unknown_checkpoint_fails_cleanly(tmp_path, capsys):
    torch.save({"some.weight": torch.zeros(3)}, tmp_path / "mystery.pth")
    code, out, err = _export(capsys, tmp_path / "mystery.pth", "-o", tmp_path / "m.onnx")
    assert code == 1 and out == "" and "unknown architecture" in err and err.count("\n") == 1
    assert _files(tmp_path) == ["mystery.pth"]
    with pytest.raises(CheckpointError, match="not a Stable Diffusion"):
        load_sd_upscaler(tmp_path)
