"""Stable Diffusion x4 upscaler on CPU: edgesr's sampler backends vs diffusers, side by side.

    python benchmarks/bench_sd_upscaler.py [--config real|tiny | --tiny] [--size 64] [--steps 3]
        [--threads N] [--workdir DIR] [--json OUT] [--no-openvino]

Nothing is downloaded. ``real`` builds the UNet and VAE of stabilityai/stable-diffusion-x4-upscaler
from its published ``unet/config.json`` and ``vae/config.json`` (written out below, as diffusers
converted them from Stability's ``x4-upscaling.yaml``; 473.4M and 55.3M parameters), and its
``scheduler/`` and ``low_res_scheduler/`` configs; ``tiny`` takes the tiny test models
(tests/tiny_models.py). Weights are random with a fixed seed: speed does not depend on their
values. The folder is saved under ``--workdir`` (default a temp dir; a kept one is reused) and
exported with ``export_sd_upscaler`` (timed; each graph's parity vs PyTorch printed).

Both cases then upscale the same random --size² image, same seed, guidance 9.0, noise level 20,
same prompt embeddings (random [2, 77, 1024], tiny [2, 8, 8], saved as the export's
``prompt_embeds.npy``): diffusers' ``StableDiffusionUpscalePipeline`` (PyTorch FP32, given
prompt_embeds and negative_prompt_embeds) and edgesr's backend (``infer`` on the whole image,
one tile). The negative and positive embeddings differ, so both run classifier-free guidance (a
batch of 2 per UNet pass; the backend runs one pass of batch 1 when they are equal). Each case,
and the export, runs in a spawned process of its own: its peak RSS is its ``VmHWM`` (RSS once
loaded is printed too; diffusers may map the weights file, whose pages count once touched).
Then, unless ``--no-openvino``, the sd-upscaler-openvino backend at the FP32 and BF16
INFERENCE_PRECISION_HINT, and on the export quantized to INT8 (``edgesr quantize --precision
int8``, calibrated on sampler trajectories of ``--size`` images at ``--steps``): INT8 weights
(``--preset weights``, NNCF weight compression) and full INT8 (``--preset diffusion``, weights
and activations, the default), both run at the BF16 hint; the "ran" column is the precision the
sampler reports it ran. Then sd-upscaler-coreml on packages written beside the export
(``edgesr export --coreml fp16``) on macOS; elsewhere its row says why it was skipped. The CPU
(model, cores, ISA flags) and the 1-minute load before and after are printed and recorded.
Each case samples the image twice: "first s" is the first sampling after loading (what a
one-shot process pays: OpenVINO and ONNX Runtime prepare their kernels for the shape on the
first call), the rest is timed on the second (what every later image of that size costs).
Times exclude loading; diffusers' UNet and VAE decode are
timed by wrapping them (``forward``/``decode``), edgesr's by the runtime's ``stage_timer``;
s/step is (total - VAE decode) / steps, "UNet step x" the UNet speed-up over diffusers; PSNR is
of each final image vs edgesr's ONNX Runtime FP32 one (same seed). Only honest on an idle
machine.
"""

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil
import torch

from edgesr.diffusion.seeding import tile_generator
from edgesr.export.sd_upscaler import EMBEDDINGS_FILE, export_sd_upscaler
from edgesr.profiling.timing import own_peak_rss_mb
from edgesr.runtimes import create_runtime

SEED = 0
GUIDANCE = 9.0
NOISE_LEVEL = 20
MAX_NOISE_LEVEL = 350
#: stabilityai/stable-diffusion-x4-upscaler unet/config.json (diffusers defaults left out).
REAL_UNET = dict(
    sample_size=128, in_channels=7, out_channels=4, layers_per_block=2,
    block_out_channels=(256, 512, 512, 1024),
    down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
    up_block_types=("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",), cross_attention_dim=1024,
    attention_head_dim=8, num_class_embeds=1000, only_cross_attention=(True, True, True, False),
    use_linear_projection=True, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
    flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, mid_block_scale_factor=1)
#: Its vae/config.json: three levels, so the decoder upsamples x4.
REAL_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512), down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=32, act_fn="silu",
    sample_size=256, scaling_factor=0.08333)
#: Its scheduler/ and low_res_scheduler/ configs (the tiny test models use the same).
SCHEDULERS = {
    "scheduler": dict(_class_name="DDIMScheduler", beta_start=0.0001, beta_end=0.02,
                      beta_schedule="scaled_linear", clip_sample=False, num_train_timesteps=1000,
                      prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1),
    "low_res_scheduler": dict(_class_name="DDPMScheduler", beta_start=0.0001, beta_end=0.02,
                              beta_schedule="scaled_linear", clip_sample=True,
                              num_train_timesteps=1000, variance_type="fixed_small")}


def model_configs(name: str) -> tuple[dict, dict, int]:
    """(UNet config, VAE config, prompt sequence length) of ``real`` or ``tiny``."""
    if name == "real":
        return REAL_UNET, REAL_VAE, 77
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_models import TINY_SD_X4_UNET, TINY_SD_X4_VAE

    return TINY_SD_X4_UNET, TINY_SD_X4_VAE, 8


def write_source(config: str, source: Path) -> dict:
    """Write the random-initialised diffusers folder ``source``: its parameter counts."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet_config, vae_config, _ = model_configs(config)
    shutil.rmtree(source, ignore_errors=True)
    torch.manual_seed(SEED)
    params = {}
    for name, model in (("unet", UNet2DConditionModel(**unet_config)),
                        ("vae", AutoencoderKL(**vae_config))):
        params[name] = sum(p.numel() for p in model.parameters())
        model.save_pretrained(source / name)
    del model
    for name, scheduler in SCHEDULERS.items():
        (source / name).mkdir()
        (source / name / "scheduler_config.json").write_text(json.dumps(scheduler))
    (source / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionUpscalePipeline", "max_noise_level": MAX_NOISE_LEVEL,
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}))
    return {"params": params}


def build_and_export(config: str, source: Path, target: Path) -> dict:
    """Write the random-initialised folder ``source``, export it to ``target``: params, reports."""
    params = write_source(config, source)["params"]
    start = time.perf_counter()
    reports = export_sd_upscaler(source, target)
    return {"seconds": time.perf_counter() - start, "params": params,
            "graphs": [{"file": r.path.name, "max_abs_diff": r.max_abs_diff, "psnr": r.psnr,
                        "size_mb": r.size_bytes / 2**20, "parity_dims": r.parity_dims,
                        "seconds": r.seconds} for r in reports]}


def timed(times: dict, key: str, fn):
    """``fn`` wrapped to add its wall time to ``times[key]``."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[key] += time.perf_counter() - start
    return wrapper


def run_diffusers(source: Path, export: Path, image: np.ndarray, steps: int,
                  threads: int) -> dict:
    """diffusers' pipeline on ``image``: times, RSS after loading and the [1, 3, 4H, 4W] output."""
    import importlib.util

    import diffusers

    torch.set_num_threads(threads)
    start = time.perf_counter()
    low_mem = importlib.util.find_spec("accelerate") is not None
    unet, vae = (cls.from_pretrained(source / name, low_cpu_mem_usage=low_mem).eval()
                 for cls, name in ((diffusers.UNet2DConditionModel, "unet"),
                                   (diffusers.AutoencoderKL, "vae")))
    pipe = diffusers.StableDiffusionUpscalePipeline(
        vae=vae, unet=unet, text_encoder=None, tokenizer=None,
        scheduler=diffusers.DDIMScheduler.from_pretrained(source, subfolder="scheduler"),
        low_res_scheduler=diffusers.DDPMScheduler.from_pretrained(
            source, subfolder="low_res_scheduler"), max_noise_level=MAX_NOISE_LEVEL)
    pipe.set_progress_bar_config(disable=True)
    embeds = torch.from_numpy(np.load(export / EMBEDDINGS_FILE))
    load = time.perf_counter() - start
    times = {"unet": 0.0, "vae": 0.0}
    unet.forward = timed(times, "unet", unet.forward)
    vae.decode = timed(times, "vae", vae.decode)
    loaded_rss = psutil.Process().memory_info().rss / 2**20

    def sample() -> np.ndarray:
        generator = tile_generator(SEED, image[0])  # the backend's seeding
        with torch.inference_mode():
            return pipe(image=torch.from_numpy(image), prompt_embeds=embeds[1:],
                        negative_prompt_embeds=embeds[:1], num_inference_steps=steps,
                        guidance_scale=GUIDANCE, noise_level=NOISE_LEVEL, generator=generator,
                        output_type="np").images

    first, _ = _seconds(sample)
    times.update(unet=0.0, vae=0.0)
    total, out = _seconds(sample)
    return {"load_s": load, "first_s": first, "total_s": total, **times,
            "loaded_rss_mb": loaded_rss, "output": out.transpose(0, 3, 1, 2)}


def _seconds(fn) -> tuple[float, object]:
    """(wall seconds, result) of ``fn()``."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run_edgesr(export: Path, image: np.ndarray, steps: int, threads: int,
               latent_tile: int = 0, latent_overlap: int = 16, backend: str = "sd-upscaler",
               precision: str | None = None) -> dict:
    """An edgesr sampler backend on ``image`` (one tile, latent-tiled when ``latent_tile``),
    its UNet and VAE timed by the runtime's ``stage_timer``: as ``run_diffusers``, plus the
    precision the engine reports it ran."""
    engine = {"threads": threads} if threads else {}
    engine |= {"precision": precision} if precision else {}
    runtime = create_runtime(backend, export, steps=steps, seed=SEED, guidance_scale=GUIDANCE,
                             noise_level=NOISE_LEVEL, latent_tile=latent_tile,
                             latent_overlap=latent_overlap, **engine)
    start = time.perf_counter()
    with runtime:
        load = time.perf_counter() - start
        loaded_rss = psutil.Process().memory_info().rss / 2**20
        first, _ = _seconds(lambda: runtime.infer(image))
        runtime.stage_timer.reset()
        total, out = _seconds(lambda: runtime.infer(image))
        stages = runtime.stage_timer.report()
        ran = runtime.info.precision or "fp32"
    return {"load_s": load, "first_s": first, "total_s": total, "unet": stages["unet"]["seconds"],
            "vae": stages["vae_decoder"]["seconds"], "loaded_rss_mb": loaded_rss,
            "ran": ran, "output": out}


def write_coreml(source: Path, export: Path) -> dict:
    """The CoreML FP16 packages beside the export (``edgesr export --coreml fp16``)."""
    from edgesr.export.diffusion_coreml import write_sd_upscaler_packages

    write_sd_upscaler_packages(source, export, precision="fp16")
    return {}


def quantize_int8(export: Path, target: Path, steps: int, size: int, preset: str) -> dict:
    """The export quantized for OpenVINO (``edgesr quantize --precision int8 --preset
    PRESET``: ``weights`` INT8 weights, ``diffusion`` full INT8), its quality report vs the
    FP32 sampler on one ``size`` image; reused when ``target`` exists."""
    from edgesr.export.quantize import QuantizeOptions, quantize

    if not (target / "unet.xml").is_file():
        quantize(str(export), target, QuantizeOptions(precision="int8", preset=preset,
                                                      steps=steps, tile=size, eval_count=1))
    return {}


def _child(fn, args, conn) -> None:
    try:
        result = fn(*args)
        conn.send({**result, "peak_rss_mb": own_peak_rss_mb()})
    except Exception as exc:  # reported by the parent, with the traceback on stderr
        traceback.print_exc()
        conn.send(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def isolated(fn, *args) -> dict:
    """``fn(*args)`` in a spawned process of its own, plus that process's ``peak_rss_mb``."""
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(fn, args, writer), daemon=True)
    process.start()
    writer.close()  # so that the child's death ends ``recv`` with EOFError
    try:
        result = reader.recv()
    except EOFError:
        result = f"the process ended with exit code {process.exitcode} (out of memory?)"
    finally:
        reader.close()
        process.join()
    if isinstance(result, str):
        raise SystemExit(f"{fn.__name__} failed: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("real", "tiny"), default="real")
    parser.add_argument("--tiny", dest="config", action="store_const", const="tiny",
                        help="the tiny test models (what CI runs): --config tiny")
    parser.add_argument("--size", type=int, default=64, help="LR image side (output x4)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads, torch and ONNX Runtime alike")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the model folder and export here, reused by later runs")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    parser.add_argument("--latent-tile", type=int, default=0, metavar="N",
                        help="also time edgesr with N x N latent windows (MultiDiffusion-style)")
    parser.add_argument("--latent-overlap", type=int, default=16, metavar="M")
    parser.add_argument("--no-openvino", dest="openvino", action="store_false",
                        help="leave out the OpenVINO FP32 / BF16 / INT8 rows")
    args = parser.parse_args()
    unet_config, _, sequence = model_configs(args.config)
    multiple = 2 ** (len(unet_config["block_out_channels"]) - 1)
    if args.size % multiple or args.steps < 1:
        parser.error(f"--size must be a multiple of {multiple} and --steps >= 1")

    from edgesr import cpu

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workdir or Path(tmp)) / args.config
        source, export = root / "source", root / "onnx"
        print(f"config {args.config}, {args.size}² -> {4 * args.size}², {args.steps} steps, "
              f"guidance {GUIDANCE}, {args.threads} threads; "
              f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"onnxruntime {ort.__version__}; work dir {root}")
        print(f"CPU: {cpu.detect().describe()}; load before {load_before:.2f}")
        if (export / "vae_decoder.onnx").is_file():
            exported = {"reused": True}
            print(f"export: reusing {export}")
        else:
            exported = isolated(build_and_export, args.config, source, export)
            print(f"export: {exported['seconds']:.1f} s, peak RSS {exported['peak_rss_mb']:.0f} "
                  f"MiB; UNet {exported['params']['unet']:,}, VAE {exported['params']['vae']:,} "
                  "parameters")
            for g in exported["graphs"]:
                print(f"  {g['file']}: {g['size_mb']:.0f} MiB, {g['seconds']:.1f} s, parity vs "
                      f"PyTorch max |diff| {g['max_abs_diff']:.2e}, PSNR {g['psnr']:.1f} dB "
                      f"at {g['parity_dims']}")
        rng = np.random.default_rng(SEED)
        dim = unet_config["cross_attention_dim"]
        embeds = rng.standard_normal((2, sequence, dim)).astype(np.float32)
        np.save(export / EMBEDDINGS_FILE, embeds)  # negative != positive: both sides run CFG
        image = rng.random((1, 3, args.size, args.size), dtype=np.float32)
        cases = {
            "diffusers PyTorch FP32": isolated(run_diffusers, source, export, image, args.steps,
                                               args.threads),
            "edgesr sd-upscaler (ORT FP32)": isolated(run_edgesr, export, image, args.steps,
                                                      args.threads)}
        if args.openvino:
            int8, full = root / "openvino_int8", root / "openvino_int8_full"
            isolated(quantize_int8, export, int8, args.steps, args.size, "weights")
            isolated(quantize_int8, export, full, args.steps, args.size, "diffusion")
            for label, folder, precision in (("FP32", export, "fp32"), ("BF16", export, "bf16"),
                                             ("INT8 weights, BF16 hint", int8, "bf16"),
                                             ("INT8 full, BF16 hint", full, "bf16")):
                cases[f"edgesr OpenVINO {label}"] = isolated(
                    run_edgesr, folder, image, args.steps, args.threads, 0, 16,
                    "sd-upscaler-openvino", precision)
        skipped = {}
        if sys.platform == "darwin":
            isolated(write_coreml, source, export)
            cases["edgesr CoreML FP16"] = isolated(
                run_edgesr, export, image, args.steps, 0, 0, 16, "sd-upscaler-coreml")
        else:
            skipped["edgesr CoreML FP16"] = f"needs macOS (this is {sys.platform})"
        if args.latent_tile:
            name = f"edgesr latent tiles {args.latent_tile}/{args.latent_overlap}"
            cases[name] = isolated(run_edgesr, export, image, args.steps, args.threads,
                                   args.latent_tile, args.latent_overlap)

    outputs = [case.pop("output") for case in cases.values()]
    diff = float(np.abs(outputs[0] - outputs[1]).max())
    base = next(iter(cases.values()))
    print(f"\n| case | ran | load s | first s | total s | s/step | UNet s/step | VAE s "
          f"| RSS loaded MiB | peak RSS MiB | speed-up | UNet step x | peak RSS x "
          f"| PSNR vs ORT FP32 dB |  "
          f"(load avg {os.getloadavg()[0]:.2f})")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, c), out in zip(cases.items(), outputs, strict=True):
        c["s_per_step"] = (c["total_s"] - c["vae"]) / args.steps
        c["speedup"] = base["total_s"] / c["total_s"]
        c["unet_step_speedup"] = base["unet"] / c["unet"]
        c["peak_rss_ratio"] = c["peak_rss_mb"] / base["peak_rss_mb"]
        mse = float(np.mean((out.astype(np.float64) - outputs[1]) ** 2))
        c["psnr_vs_ort_fp32"] = 10 * np.log10(1 / mse) if mse else float("inf")
        print(f"| {name} | {c.get('ran', 'fp32')} | {c['load_s']:.1f} | {c['first_s']:.2f} | "
              f"{c['total_s']:.2f} | "
              f"{c['s_per_step']:.3f} | {c['unet'] / args.steps:.3f} | {c['vae']:.2f} | "
              f"{c['loaded_rss_mb']:.0f} | {c['peak_rss_mb']:.0f} | {c['speedup']:.2f} | "
              f"{c['unet_step_speedup']:.2f} | {c['peak_rss_ratio']:.2f} | "
              f"{c['psnr_vs_ort_fp32']:.1f} |")
    for name, why in skipped.items():
        print(f"| {name} | skipped: {why} |" + " |" * 12)
    load_after = os.getloadavg()[0]
    print(f"\nload before {load_before:.2f}, after {load_after:.2f}")
    side = 4 * args.size
    print(f"\noutputs [1, 3, {side}, {side}]: max |edgesr - diffusers| {diff:.2e}")
    if args.latent_tile:  # latent tiles: one sample, but each window sees less context
        tiled = np.abs(outputs[-1] - outputs[1])
        print(f"latent-tiled vs untiled edgesr: max |diff| {tiled.max():.3f}, "
              f"mean {tiled.mean():.4f}")
    if args.json:
        args.json.write_text(json.dumps({
            "config": args.config, "size": args.size, "steps": args.steps,
            "threads": args.threads, "guidance_scale": GUIDANCE, "export": exported,
            "cpu": cpu.detect().describe(), "load_before": load_before, "load_after": load_after,
            "cases": cases, "skipped": skipped, "max_abs_diff": diff}, indent=2))


if __name__ == "__main__":
    main()
