"""The sd-upscaler backend on a tiny exported Stable Diffusion x4 upscaler: parity with diffusers'
pipeline, the tiled ``edgesr upscale`` path, seeding, latent tiling, and one-line failures."""

import importlib.util
import json
import shutil
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import smooth_image
from onnx import TensorProto, helper
from PIL import Image
from tiny_models import make_tiny, write_tiny_sd_x4

from edgesr.cli import main
from edgesr.diffusion.seeding import tile_seed
from edgesr.runtimes import create_runtime

diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed: "
                                "pip install 'edgesr[diffusion]'")
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
NO_TRANSFORMERS = "transformers is not installed (diffusers' upscale pipeline and CLIP need it)"
STEPS = 3
#: Measured 2.8e-6 (ONNX Runtime vs PyTorch, float32, 3 DDIM steps); bound with margin.
PARITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """(source folder, export folder, unet, vae): the tiny model exported with ``--prompt``."""
    root = tmp_path_factory.mktemp("sd")
    unet, vae = write_tiny_sd_x4(root / "src", text_encoder=HAS_TRANSFORMERS)
    assert main(["export", str(root / "src"), "-o", str(root / "out"), "--prompt", "a cat"]) == 0
    if not HAS_TRANSFORMERS:  # embeddings as a text encoder would give them
        np.save(root / "out" / "prompt_embeds.npy",
                np.random.default_rng(0).standard_normal((2, 8, 8)).astype(np.float32))
    return root / "src", root / "out", unet, vae


def _pipeline(sd, text: bool = False):
    if not HAS_TRANSFORMERS:
        pytest.skip(NO_TRANSFORMERS)
    source, _, unet, vae = sd
    text_encoder = tokenizer = None
    if text:
        from transformers import CLIPTextModel, CLIPTokenizer

        text_encoder = CLIPTextModel.from_pretrained(str(source / "text_encoder")).eval()
        tokenizer = CLIPTokenizer.from_pretrained(str(source / "tokenizer"))
    pipe = diffusers.StableDiffusionUpscalePipeline(
        vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=diffusers.DDIMScheduler.from_pretrained(source, subfolder="scheduler"),
        low_res_scheduler=diffusers.DDPMScheduler.from_pretrained(
            source, subfolder="low_res_scheduler"), max_noise_level=350)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(seed: int = 0, h: int = 16, w: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 3, h, w), dtype=np.float32)


def _infer(folder, batch, backend: str = "sd-upscaler", **options) -> np.ndarray:
    with create_runtime(backend, folder, steps=STEPS, **options) as runtime:
        return runtime.infer(batch)


def test_torch_backend_matches_the_onnx_sampler(sd):
    """sd-upscaler-torch runs the exported graphs' recorded diffusers modules in the same loop:
    the same seed gives ONNX Runtime's output within PARITY_ATOL (measured 5.7e-7, 3 steps)."""
    image = _image(3)
    with create_runtime("sd-upscaler-torch", sd[1], steps=STEPS, seed=5) as runtime:
        assert (runtime.info.precision, runtime.info.device) == ("fp32", "cpu")
        torch_out = runtime.infer(image)
        assert runtime.stage_timer.calls["unet"] == STEPS
    onnx_out = _infer(sd[1], image, seed=5)
    assert torch_out.shape == onnx_out.shape == (1, 3, 64, 48)
    np.testing.assert_allclose(torch_out, onnx_out, rtol=0, atol=PARITY_ATOL)
    assert not np.array_equal(torch_out, _infer(sd[1], image, seed=6))  # the seed matters


@pytest.mark.parametrize("options", [
    {}, {"guidance_scale": 1.0, "noise_level": 120}, {"same_embeds": True}])
def test_matches_diffusers_pipeline(sd, tmp_path, options):
    pipe = _pipeline(sd)
    options = dict(options)
    embeds = np.load(sd[1] / "prompt_embeds.npy")
    if options.pop("same_embeds", False):  # guidance cannot change it: one UNet pass per step
        embeds = np.stack([embeds[1], embeds[1]])
        np.save(tmp_path / "same.npy", embeds)
        options["prompt_embeds"] = str(tmp_path / "same.npy")
    image = _image()
    out = _infer(sd[1], image, seed=7, **options)
    generator = torch.Generator().manual_seed(tile_seed(7, image[0]))
    e = torch.from_numpy(embeds)
    ref = pipe(image=torch.from_numpy(image), prompt_embeds=e[1:], negative_prompt_embeds=e[:1],
               num_inference_steps=STEPS, guidance_scale=options.get("guidance_scale", 9.0),
               noise_level=options.get("noise_level", 20), generator=generator,
               output_type="np").images.transpose(0, 3, 1, 2)
    assert out.shape == ref.shape == (1, 3, 64, 48)
    assert np.abs(out - ref).max() <= PARITY_ATOL


def test_export_saves_the_prompt_embeddings(sd):
    pipe = _pipeline(sd, text=True)
    with torch.no_grad():
        positive, negative = pipe.encode_prompt("a cat", "cpu", 1, True)
    saved = np.load(sd[1] / "prompt_embeds.npy")
    np.testing.assert_allclose(saved, torch.cat([negative, positive]).numpy(), atol=1e-5)
    assert not np.allclose(saved[0], saved[1])
    for name in ("model_index.json", "scheduler/scheduler_config.json",
                 "low_res_scheduler/scheduler_config.json"):
        assert (sd[1] / name).read_bytes() == (sd[0] / name).read_bytes()


def test_seeds_are_per_tile_and_reproducible(sd):
    a, b = _image(1), _image(2)
    both = _infer(sd[1], np.concatenate([a, b]), seed=3)
    np.testing.assert_array_equal(both, _infer(sd[1], np.concatenate([a, b]), seed=3))
    np.testing.assert_array_equal(both[1:], _infer(sd[1], b, seed=3))  # batch-independent
    assert np.abs(both[:1] - _infer(sd[1], a, seed=4)).max() > 1e-3


def _png(path, h=20, w=24):
    rng = np.random.default_rng(5)
    Image.fromarray((smooth_image(rng, h, w) * 255).astype(np.uint8)).save(path)
    return path


def _upscale(capsys, *args) -> tuple[int, str]:
    code = main(["upscale", *map(str, args), "-q"])
    return code, capsys.readouterr().err


def test_upscale_cli_tiled_and_whole(sd, tmp_path, capsys):
    src = _png(tmp_path / "in.png")
    outputs = {}
    for tile in (8, 0):
        dst = tmp_path / f"out_{tile}.png"
        code, _ = _upscale(capsys, src, "-o", dst, "-m", sd[1], "--tile", tile, "--overlap", 2,
                           "--steps", 2, "--seed", 1, "--guidance", 5, "--noise-level", 30)
        assert code == 0
        outputs[tile] = np.asarray(Image.open(dst))
        assert outputs[tile].shape == (80, 96, 3)
    assert not np.array_equal(outputs[8], outputs[0])  # other tiles, other noise
    again = tmp_path / "again.png"
    assert _upscale(capsys, src, "-o", again, "-m", sd[1], "--tile", 8, "--overlap", 2,
                    "--steps", 2, "--seed", 1, "--guidance", 5, "--noise-level", 30)[0] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(again)), outputs[8])


def test_bench_times_an_export_folder(sd, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "-m", str(sd[1]), "-b", "sd-upscaler", "--tiles", "8", "--runs", "1",
                 "--warmup", "0", "--image-size", "16x16", "--no-isolate",
                 "-O", "sd-upscaler:steps=2", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    case = next(c for c in report["cases"] if c["backend"] == "sd-upscaler")
    assert case["status"] == "ok" and case["rows"][0]["p50_ms"] > 0
    assert report["model"]["scale"] == 4  # read off the output: a folder has no one graph
    base = report["cases"][0]  # diffusers eager, in the same run, is the baseline
    assert report["baseline"] == {"backend": "sd-upscaler-torch", "precision": "fp32",
                                  "reason": None}
    assert (base["backend"], base["status"], base["effective_precision"]) == (
        "sd-upscaler-torch", "ok", "fp32")
    assert set(base["e2e"]["stages"]) == {"unet", "vae_decoder"}
    assert base["e2e"]["stages"]["unet"]["calls"] > 0
    assert case["rows"][0]["speedup"] > 0 and case["e2e"]["speedup"] > 0
    assert case["baseline_psnr_db"] > 40  # same loop, same seed: ONNX Runtime vs PyTorch


def test_bench_without_the_pytorch_source_falls_back(sd, tmp_path):
    """An export whose recorded source is gone has its torch baseline unavailable with the one
    line, and the FP32 reference on the fastest exact backend as the baseline."""
    source = shutil.copytree(sd[0], tmp_path / "src")
    assert main(["export", str(source), "-o", str(tmp_path / "export")]) == 0
    shutil.copy(sd[1] / "prompt_embeds.npy", tmp_path / "export")
    shutil.rmtree(source)
    out = tmp_path / "bench"
    assert main(["bench", "-m", str(tmp_path / "export"), "-b", "sd-upscaler", "--tiles", "8",
                 "--runs", "1", "--warmup", "0", "--image-size", "16x16", "--no-isolate",
                 "-O", "sd-upscaler:steps=1",
                 "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    base = report["cases"][0]
    assert (base["backend"], base["status"]) == ("sd-upscaler-torch", "unavailable")
    assert f"its PyTorch source {source} is not there" in base["reason"]
    assert "\n" not in base["reason"]
    assert report["baseline"]["backend"] == "sd-upscaler"
    assert "fastest exact backend" in report["baseline"]["reason"]
    assert report["cases"][1]["e2e"]["speedup"] == 1.0


def test_latent_tile_covering_the_input_is_the_untiled_run(sd):
    image = _image()
    whole = _infer(sd[1], image, seed=2)
    for tile in (16, 32):
        np.testing.assert_array_equal(_infer(sd[1], image, seed=2, latent_tile=tile,
                                             latent_overlap=4), whole)


def _pointwise_folder(sd, tmp_path):
    """The export folder with a per-pixel "UNet" (which still reads the timestep, embeddings and
    noise level of its batch item) and a nearest x4 "VAE": latent tiling cannot change them."""
    folder = shutil.copytree(sd[1], tmp_path / "pointwise")
    f32, dims = TensorProto.FLOAT, ["batch", None, "height", "width"]
    const = [helper.make_tensor(name, TensorProto.INT64, [len(v)], v) for name, v in (
        ("c0", [0]), ("c3", [3]), ("c4", [4]), ("c7", [7]), ("c1", [1]), ("shape", [-1, 1, 1, 1]))]
    const += [helper.make_tensor(name, f32, [len(v)], v) for name, v in (
        ("half", [0.5]), ("tenth", [0.1]), ("k_embed", [0.01]), ("k_time", [1e-4]),
        ("k_label", [1e-3]), ("scales", [1, 1, 4, 4]))]
    node = helper.make_node
    unet = helper.make_graph([
        node("Slice", ["sample", "c0", "c4", "c1"], ["latent"]),
        node("Slice", ["sample", "c4", "c7", "c1"], ["image"]),
        node("Mul", ["latent", "half"], ["a"]),
        node("ReduceMean", ["image"], ["image_mean"], axes=[1]),
        node("Mul", ["image_mean", "tenth"], ["b"]),
        node("ReduceMax", ["encoder_hidden_states"], ["e"], axes=[1, 2], keepdims=0),
        node("Mul", ["e", "k_embed"], ["e1"]),
        node("Mul", ["timestep", "k_time"], ["t1"]),
        node("Cast", ["class_labels"], ["label"], to=f32),
        node("Mul", ["label", "k_label"], ["l1"]),
        node("Sum", ["e1", "t1", "l1"], ["per_item"]),
        node("Reshape", ["per_item", "shape"], ["c"]),
        node("Sum", ["a", "b", "c"], ["out_sample"])], "unet", [
        helper.make_tensor_value_info("sample", f32, dims),
        helper.make_tensor_value_info("timestep", f32, ["batch"]),
        helper.make_tensor_value_info("encoder_hidden_states", f32, ["batch", None, None]),
        helper.make_tensor_value_info("class_labels", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("out_sample", f32, dims)], const)
    vae = helper.make_graph([
        node("Slice", ["latent_sample", "c0", "c3", "c1"], ["rgb"]),
        node("Resize", ["rgb", "", "scales"], ["sample"], mode="nearest")], "vae",
        [helper.make_tensor_value_info("latent_sample", f32, dims)],
        [helper.make_tensor_value_info("sample", f32, dims)], const)
    for name, graph in (("unet.onnx", unet), ("vae_decoder.onnx", vae)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        real = onnx.load(str(folder / name), load_external_data=False)
        helper.set_model_props(model, {p.key: p.value for p in real.metadata_props})
        onnx.save(model, str(folder / name))
    return folder


def test_latent_tiling_of_a_pointwise_model_is_exact(sd, tmp_path):
    """Window weights normalise and cover every pixel: tiled = untiled to float32 rounding."""
    folder, image = _pointwise_folder(sd, tmp_path), _image(3, 20, 28)
    whole = _infer(folder, image, seed=5, noise_level=60)
    for tile, overlap in ((8, 4), (12, 2), (16, 6)):
        tiled = _infer(folder, image, seed=5, noise_level=60, latent_tile=tile,
                       latent_overlap=overlap)
        assert np.abs(tiled - whole).max() <= 1e-5
    assert 0.05 < whole.std()  # the test model leaves an image to compare


def test_latent_tiling_is_one_seeded_sample(sd):
    image = _image(4, 20, 16)
    tiled = _infer(sd[1], image, seed=6, latent_tile=8, latent_overlap=4)
    assert tiled.shape == (1, 3, 80, 64)
    np.testing.assert_array_equal(tiled, _infer(sd[1], image, seed=6, latent_tile=8,
                                                latent_overlap=4))
    assert np.abs(tiled - _infer(sd[1], image, seed=6)).max() > 1e-3  # the UNet sees context


def test_upscale_cli_latent_tiles(sd, tmp_path, capsys):
    src, dst = _png(tmp_path / "in.png"), tmp_path / "out.png"
    code, _ = _upscale(capsys, src, "-o", dst, "-m", sd[1], "--tile", 0, "--steps", 2,
                       "--latent-tile", 8, "--latent-overlap", 4)
    assert code == 0 and Image.open(dst).size == (96, 80)
    rrdb = tmp_path / "rrdb.pth"
    torch.save(make_tiny("rrdb_x2").state_dict(), rrdb)
    code, err = _upscale(capsys, src, "-o", tmp_path / "other.png", "-m", rrdb,
                         "--latent-tile", 8)
    assert code == 1 and err.count("\n") == 1
    assert "--latent-tile and --latent-overlap are for Stable Diffusion x4 folders" in err
    assert not (tmp_path / "other.png").exists()


def _broken(sd, tmp_path, breakage):
    folder = shutil.copytree(sd[1], tmp_path / "model")
    if breakage == "no_embeds":
        (folder / "prompt_embeds.npy").unlink()
    elif breakage == "no_vae":
        (folder / "vae_decoder.onnx").unlink()
    elif breakage == "no_scheduler":
        shutil.rmtree(folder / "scheduler")
    elif breakage == "bad_embeds":
        np.save(folder / "prompt_embeds.npy", np.zeros((2, 8, 5), np.float32))
    return folder


@pytest.mark.parametrize("breakage, extra, message", [
    ("no_embeds", (), "no prompt embeddings (prompt_embeds.npy); re-export with edgesr export"),
    ("no_vae", (), "needs unet.onnx and vae_decoder.onnx; vae_decoder.onnx is missing"),
    ("no_scheduler", (), "scheduler/scheduler_config.json missing"),
    ("bad_embeds", (), "prompt embeddings must be [2, sequence, 8] (negative, positive), got "
     "[2, 8, 5]"),
    ("", ("--noise-level", 400), "noise_level 400 is past this model's max_noise_level 350"),
    ("", ("-b", "onnxruntime"), "it runs on --backend sd-upscaler or sd-upscaler-openvino or "
     "sd-upscaler-tensorrt or sd-upscaler-coreml or sd-upscaler-torch, not 'onnxruntime'"),
    ("", ("--steps", 0), "need steps >= 1"),
    ("", ("--latent-tile", 8), "need latent_tile >= 0 and 0 <= latent_overlap < latent_tile"),
    ("", ("--latent-tile", 7, "--latent-overlap", 2), "latent_tile 7 must be a multiple of this "
     "UNet's size multiple 2"),
    ("diffusers", (), "pip install 'edgesr[diffusion]'"),
])
def test_failures_are_one_line_and_write_nothing(sd, tmp_path, capsys, monkeypatch, breakage,
                                                 extra, message):
    if breakage == "diffusers":
        monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    folder = _broken(sd, tmp_path, breakage)
    src = _png(tmp_path / "in.png")
    code, err = _upscale(capsys, src, "-o", tmp_path / "out.png", "-m", folder, *extra)
    assert code == 1 and message in err and err.count("\n") == 1
    assert not (tmp_path / "out.png").exists()
    if breakage == "no_embeds":  # the other way: embeddings given on the command line
        code, _ = _upscale(capsys, src, "-o", tmp_path / "out.png", "-m", folder, "--steps", 1,
                           "--prompt-embeds", sd[1] / "prompt_embeds.npy", "--tile", 0)
        assert code == 0 and Image.open(tmp_path / "out.png").size == (96, 80)


def test_backend_needs_an_export_folder(tmp_path, capsys):
    src = _png(tmp_path / "in.png")
    code, err = _upscale(capsys, src, "-o", tmp_path / "out.png", "-m", tmp_path,
                         "-b", "sd-upscaler")
    assert code == 1 and "needs a Stable Diffusion x4 export folder" in err
    assert not (tmp_path / "out.png").exists()
