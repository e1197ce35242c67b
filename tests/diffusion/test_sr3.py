"""The sr3 backend on a tiny SR3 denoiser: parity with a transcription of Janspiry's
``GaussianDiffusion.p_sample_loop``, respacing, the ``edgesr upscale`` path (checkpoint and
export, tiled and whole), seeding, and one-line failures."""

import json

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image
from tiny_models import make_tiny, make_tiny_denoiser

from edgesr.cli import main
from edgesr.diffusion.seeding import tile_seed
from edgesr.diffusion.sessions import onnxruntime_sessions
from edgesr.diffusion.sr3 import SR3Sampler, SR3Sampling
from edgesr.diffusion.sr3 import schedule as noise_schedule
from edgesr.errors import EdgesrError
from edgesr.export.specs import read_onnx_metadata
from edgesr.models.sr3 import (
    JANSPIRY_SCHEDULE,
    linear_betas,
    respace_betas,
    sampling_coefficients,
)
from edgesr.runtimes import create_runtime

#: The checkpoint's own schedule: short, so the full loop is cheap.
BETAS = np.linspace(1e-3, 0.3, 6)
#: Measured max abs diff 6.6e-7 (checkpoint's 6 steps) and 4.9e-6 (2000 respaced to 4), ONNX
#: Runtime vs PyTorch in float32 over 3 seeds; bound with margin.
PARITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def sr3(tmp_path_factory):
    """(checkpoint, export, module): the tiny SR3 saved as Janspiry's GaussianDiffusion does
    (with its betas buffer), and its edgesr export."""
    root = tmp_path_factory.mktemp("sr3")
    (root / "cache").mkdir()
    model = make_tiny_denoiser("sr3")
    checkpoint = root / "sr3_gen.pth"
    torch.save({**{"denoise_fn." + k: v for k, v in model.state_dict().items()},
                "betas": torch.tensor(BETAS, dtype=torch.float32),
                "alphas_cumprod": torch.ones(len(BETAS))}, checkpoint)
    assert main(["export", str(checkpoint), "-o", str(root / "sr3.onnx")]) == 0
    return checkpoint, root / "sr3.onnx", model


@pytest.fixture
def cache(sr3, monkeypatch):
    """One export cache for the module, so the checkpoint is exported once."""
    folder = sr3[0].parent / "cache"
    monkeypatch.setenv("EDGESR_CACHE", str(folder))
    return folder


def _janspiry_sample(model, tile: np.ndarray, scale: int, betas: np.ndarray,
                     seed: int) -> np.ndarray:
    """Janspiry's set_new_noise_schedule + p_sample_loop (conditional, clip_denoised), noise
    drawn from the tile's generator in its order: x_T, then one draw per step t > 0."""
    to_torch = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731 - as Janspiry
    alphas = 1. - betas
    alphas_cumprod = np.cumprod(alphas, axis=0)
    alphas_cumprod_prev = np.append(1., alphas_cumprod[:-1])
    sqrt_alphas_cumprod_prev = np.sqrt(np.append(1., alphas_cumprod))
    sqrt_recip = to_torch(np.sqrt(1. / alphas_cumprod))
    sqrt_recipm1 = to_torch(np.sqrt(1. / alphas_cumprod - 1))
    posterior_variance = betas * (1. - alphas_cumprod_prev) / (1. - alphas_cumprod)
    log_variance = to_torch(np.log(np.maximum(posterior_variance, 1e-20)))
    coef1 = to_torch(betas * np.sqrt(alphas_cumprod_prev) / (1. - alphas_cumprod))
    coef2 = to_torch((1. - alphas_cumprod_prev) * np.sqrt(alphas) / (1. - alphas_cumprod))
    size = (tile.shape[2] * scale, tile.shape[1] * scale)
    upsampled = [np.asarray(Image.fromarray(c).resize(size, Image.BICUBIC)) for c in tile]
    x = torch.from_numpy(np.clip(np.stack(upsampled), 0, 1)[None] * 2 - 1)
    generator = torch.Generator().manual_seed(tile_seed(seed, tile))
    img = torch.randn(x.shape, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on two shared cores crawl
    with torch.no_grad():
        for t in reversed(range(len(betas))):
            noise_level = torch.FloatTensor([sqrt_alphas_cumprod_prev[t + 1]]).repeat(1, 1)
            noise = model(torch.cat([x, img], dim=1), noise_level)
            x_recon = (sqrt_recip[t] * img - sqrt_recipm1[t] * noise).clamp_(-1., 1.)
            mean = coef1[t] * x_recon + coef2[t] * img
            z = torch.randn(img.shape, generator=generator) if t > 0 else torch.zeros_like(img)
            img = mean + z * (0.5 * log_variance[t]).exp()
    torch.set_num_threads(threads)
    return np.clip(img.numpy() / 2 + 0.5, 0, 1)


def _spaced(betas: np.ndarray, steps: int) -> np.ndarray:
    """improved DDPM's space_timesteps(T, [steps]) + SpacedDiffusion's new betas."""
    stride = (len(betas) - 1) / (steps - 1)
    use = {round(i * stride) for i in range(steps)}
    last, new = 1.0, []
    for i, alpha_cumprod in enumerate(np.cumprod(1.0 - betas)):
        if i in use:
            new.append(1 - alpha_cumprod / last)
            last = alpha_cumprod
    return np.array(new)


def _infer(path, batch, **options) -> np.ndarray:
    with create_runtime("sr3", path, **options) as runtime:
        return runtime.infer(batch)


@pytest.mark.parametrize("schedule", ["checkpoint", "janspiry_respaced"])
def test_matches_janspiry_p_sample_loop(sr3, schedule):
    _, onnx_path, model = sr3
    batch = np.random.default_rng(0).random((2, 3, 4, 6), dtype=np.float32)
    if schedule == "checkpoint":
        options, betas = {}, BETAS.astype(np.float32).astype(np.float64)
    else:  # Janspiry's default asked for over the checkpoint's, respaced to 4 steps
        options = {"steps": 4, "n_timestep": 2000}
        betas = _spaced(linear_betas(**JANSPIRY_SCHEDULE), 4)
    out = _infer(onnx_path, batch, scale=2, seed=5, **options)
    assert out.shape == (2, 3, 8, 12)
    for tile, got in zip(batch, out, strict=True):
        ref = _janspiry_sample(model, tile, 2, betas, seed=5)[0]
        np.testing.assert_allclose(got, ref, atol=PARITY_ATOL, rtol=0)


def test_schedule_without_betas_is_janspirys(sr3):
    sampling = SR3Sampling(scale=2)
    default = noise_schedule(sampling, {}, sr3[1])["posterior_mean_coef1"].numpy()
    np.testing.assert_array_equal(default, sampling_coefficients(
        linear_betas(2000, 1e-6, 1e-2))["posterior_mean_coef1"])
    assert len(noise_schedule(sampling, {"betas": "[0.1, 0.2]"}, sr3[1])["noise_level"]) == 2


def test_sampler_runs_through_any_session_factory(sr3):
    """The sampler opens its graph only through the factory it is given and runs every step
    there; ONNX Runtime's factory wrapped by a counting one gives the backend's image."""
    _, onnx_path, _ = sr3
    opened, runs = [], []
    ort_sessions = onnxruntime_sessions("sr3", device="cpu")

    class Counting:
        def __init__(self, session):
            self.session = session

        def run(self, inputs):
            runs.append(sorted(inputs))
            return self.session.run(inputs)

        def metadata(self):
            return self.session.metadata()

    def factory(path):
        opened.append(path)
        return Counting(ort_sessions(path))

    tile = np.random.default_rng(3).random((3, 4, 6), dtype=np.float32)
    sampler = SR3Sampler(onnx_path, SR3Sampling(scale=2, steps=3, seed=7), factory)
    out = sampler.sample(tile)
    assert opened == [onnx_path] and runs == [["noise_level", "x"]] * 3
    np.testing.assert_array_equal(out, _infer(onnx_path, tile[None], scale=2, steps=3, seed=7))


def test_torch_backend_matches_the_onnx_sampler(sr3):
    """sr3-torch runs the checkpoint the export recorded, eagerly, in the same loop: the same
    seed gives ONNX Runtime's output within PARITY_ATOL."""
    tile = np.random.default_rng(4).random((1, 3, 4, 6), dtype=np.float32)
    with create_runtime("sr3-torch", sr3[1], scale=2, steps=3, seed=7) as runtime:
        assert (runtime.info.precision, runtime.info.device) == ("fp32", "cpu")
        out = runtime.infer(tile)
        assert runtime.stage_timer.calls == {"sr3": 3}
    np.testing.assert_allclose(out, _infer(sr3[1], tile, scale=2, steps=3, seed=7), rtol=0,
                               atol=PARITY_ATOL)


def test_respacing():
    betas = linear_betas(**JANSPIRY_SCHEDULE)
    np.testing.assert_allclose(respace_betas(betas, len(betas)), betas, rtol=1e-9, atol=0)
    np.testing.assert_allclose(respace_betas(betas, 4), _spaced(betas, 4), rtol=1e-12)
    kept = np.cumprod(1 - respace_betas(betas, 5))
    np.testing.assert_allclose(kept, np.cumprod(1 - betas)[[0, 500, 1000, 1499, 1999]], rtol=1e-12)


@pytest.mark.parametrize("steps", [2, 3])
def test_fewer_steps_give_finite_output(sr3, steps):
    out = _infer(sr3[1], np.full((1, 3, 4, 6), 0.5, np.float32), scale=4, steps=steps)
    assert out.shape == (1, 3, 16, 24) and np.isfinite(out).all()


def test_seeds(sr3):
    image = np.random.default_rng(1).random((1, 3, 4, 4), dtype=np.float32)
    first, again = (_infer(sr3[1], image, scale=2, seed=3) for _ in range(2))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - _infer(sr3[1], image, scale=2, seed=4)).max() > 1e-3


def _png(height: int, width: int) -> np.ndarray:
    return (smooth_image(np.random.default_rng(0), height, width) * 255).astype(np.uint8)


def _upscale(capsys, *args) -> tuple[int, str]:
    code = main(["upscale", *map(str, args), "-q"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("model", ["checkpoint", "export"])
@pytest.mark.parametrize("tile", [0, 8])
def test_upscale_cli(sr3, cache, tmp_path, capsys, model, tile):
    source = tmp_path / "in.png"
    Image.fromarray(_png(12, 16)).save(source)
    target = tmp_path / "out.png"
    path = sr3[0] if model == "checkpoint" else sr3[1]
    code, err = _upscale(capsys, source, "-o", target, "-m", path, "--scale", 2, "--steps", 3,
                         "--tile", tile, "--overlap", 2)
    assert code == 0, err
    assert Image.open(target).size == (32, 24)
    if model == "checkpoint":  # exported once, with the checkpoint's schedule
        (cached,) = (cache / "onnx").iterdir()
        betas = json.loads(read_onnx_metadata(cached)["betas"])
        np.testing.assert_allclose(betas, BETAS, rtol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["-m", "{ckpt}"], "pass --scale N"),
    (["-m", "{ckpt}", "-b", "torch"],
     "runs on --backend sr3 or sr3-openvino or sr3-tensorrt or sr3-coreml or sr3-torch, not "
     "'torch'"),
    (["-m", "{onnx}", "-b", "onnxruntime", "--scale", "2"], "runs on --backend sr3"),
    (["-m", "{rrdb}", "-b", "sr3", "--scale", "2"], "--backend sr3 needs an SR3 denoiser"),
    (["-m", "{rrdb}", "--scale", "2"], "--scale is for SR3 models"),
    (["-m", "{ckpt}", "--scale", "2", "--steps", "1"], "need steps >= 2"),
])
def test_failures_are_one_line(sr3, cache, tmp_path, capsys, args, message):
    source = tmp_path / "in.png"
    Image.fromarray(_png(8, 8)).save(source)
    rrdb = tmp_path / "rrdb.pth"
    torch.save(make_tiny("rrdb_x2").state_dict(), rrdb)
    paths = dict(ckpt=sr3[0], onnx=sr3[1], rrdb=rrdb)
    code, err = _upscale(capsys, source, "-o", tmp_path / "out.png",
                         *[a.format(**paths) for a in args])
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out.png").exists()


def test_bad_schedule_is_a_clear_error(sr3):
    with pytest.raises(EdgesrError, match="bad SR3 noise schedule"):
        _infer(sr3[1], np.zeros((1, 3, 4, 4), np.float32), scale=2, linear_end=1.0)
