"""``edgesr upscale``: an image or a folder of images through a model, tile by tile."""

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from edgesr.limits import DEFAULT_INPUT_PIXELS, DEFAULT_OUTPUT_PIXELS
from edgesr.runtimes.registry import BACKENDS


def register(sub) -> None:
    up = sub.add_parser("upscale", help="upscale an image or a folder of images")
    up.add_argument("input", help="an image file or a folder of images")
    up.add_argument("-o", "--output", help="output file or folder (default: beside the input)")
    up.add_argument("-m", "--model", help="checkpoint (.pth/.safetensors), ncnn .param, .onnx, "
                    "a Stable Diffusion x4 export folder, or a bundled model name (default: "
                    "realesrgan-x4plus)")
    up.add_argument("-b", "--backend", metavar="BACKEND[:PRECISION]",
                    help=f"{', '.join(BACKENDS)} or a plugin's (edgesr backends lists them "
                    "all; default: by model kind and file type), optionally with a precision "
                    "it runs, e.g. sd-upscaler-openvino:bf16")
    up.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16", "int8"),
                    help="precision to run at, a backend option (default: what the model "
                    "records, else fp32); auto: the fastest the device runs natively that keeps "
                    "40 dB PSNR against fp32 (bf16 on CPUs with AVX512_BF16/AMX, fp16 on GPUs), "
                    "checked once per model and cached. The precision that ran is printed")
    up.add_argument("--device", help="where the backend runs: CPU, GPU, GPU.1, NPU (openvino), "
                    "cpu, cuda (onnxruntime, torch), a CUDA index (tensorrt)")
    up.add_argument("--tile", type=int, default=256, help="tile size in input pixels; 0 = whole "
                    "image (default: 256)")
    up.add_argument("--overlap", type=int, default=32, help="tile overlap in input pixels")
    up.add_argument("--batch", type=int, default=None, help="tiles per inference call")
    up.add_argument("--blend", default=None, help="tile blending window (see docs)")
    up.add_argument("-s", "--outscale", type=float, default=None,
                    help="final scale, if other than the model's native scale: the output is "
                    "resized to it (not SR3's --scale, the factor the model upscales by)")
    up.add_argument("--bit-depth", type=int, choices=(8, 16), default=None,
                    help="output bit depth (default: the input's)")
    up.add_argument("--max-memory", metavar="SIZE", help="keep the process's peak memory "
                    "within SIZE, e.g. 2G, by picking the tile size per image from the model's "
                    "memory, measured once per model and backend (overrides --tile)")
    up.add_argument("--stream", action="store_true", help="write PNG output row band by row "
                    "band: memory stays flat in image size (for very large images)")
    up.add_argument("--ext", help="output extension for folder runs, e.g. .png")
    up.add_argument("--max-input-pixels", metavar="N", help="refuse (from the header, before "
                    "decoding) images with more pixels, e.g. 64M or 8000x8000; 0: no limit "
                    f"(default: {DEFAULT_INPUT_PIXELS // 10**6}M)")
    up.add_argument("--max-output-pixels", metavar="N", help="refuse images whose upscale has "
                    f"more pixels (default: {DEFAULT_OUTPUT_PIXELS // 10**6}M; raise it with "
                    "--stream)")
    up.add_argument("--threads", type=int, default=0, help="CPU threads for the backend")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    up.add_argument("--consistency-map", metavar="PATH", help="also write a heat map of where "
                    "the downscaled output departs from the input (one input image only)")
    up.add_argument("--consistency-downsample", choices=("bicubic", "area"), default="bicubic",
                    help="downscaling for --consistency-map (default: bicubic)")
    sd = up.add_argument_group("diffusion models: Stable Diffusion x4 export folders (backend "
                               "sd-upscaler) and SR3 checkpoints or exports (backend sr3)")
    sd.add_argument("--scale", type=int, help="SR3 only: the factor the model upscales by (SR3 "
                    "nets take any; e.g. 8 for a 16->128 model), before any --outscale resize")
    sd.add_argument("--steps", type=int, help="sampling steps (default: 20 for sd-upscaler; for "
                    "sr3 the model's full schedule, fewer respace it)")
    sd.add_argument("--guidance", type=float, dest="guidance_scale",
                    help="classifier-free guidance scale; <= 1 turns it off (default: 9)")
    sd.add_argument("--noise-level", type=int, help="noise added to the low-res image (default: "
                    "20)")
    sd.add_argument("--seed", type=int, help="random seed; same seed, same image (default: 0)")
    sd.add_argument("--prompt-embeds", metavar="FILE.npy", help="[2, sequence, dim] negative "
                    "and positive prompt embeddings, instead of the folder's prompt_embeds.npy")
    sd.add_argument("--latent-tile", type=int, metavar="N", help="sd-upscaler only: sample "
                    "in overlapping latent windows of N low-res pixels, blended at every step, "
                    "so the image is one sample (no seams between tiles) and the VAE decodes "
                    "window by window; use with --tile 0 (or a large --tile) so the sampler "
                    "sees the whole image (default: 0, off)")
    sd.add_argument("--latent-overlap", type=int, metavar="N", help="sd-upscaler only: least "
                    "overlap of the --latent-tile windows (default: 16)")
    up.set_defaults(func=run)


#: ``edgesr upscale`` options passed to the diffusion backends when given.
SD_OPTIONS = ("scale", "steps", "guidance_scale", "noise_level", "seed", "prompt_embeds",
              "latent_tile", "latent_overlap")


def run(args: argparse.Namespace) -> int:
    from edgesr.errors import EdgesrError
    from edgesr.model_kinds import DENOISER, SD_X4, backends_for
    from edgesr.model_memory import measure_model_memory, return_freed_memory
    from edgesr.pipeline import (
        open_runtime,
        parse_size,
        plan_outputs,
        resolve_runtime,
        upscale_many,
    )
    from edgesr.runtimes.registry import parse_variant
    from edgesr.upscaler import Upscaler

    if args.consistency_map and (args.max_memory or args.stream):
        raise EdgesrError("--consistency-map holds the whole output and its map in memory; "
                          "it takes no --stream or --max-memory")
    from edgesr.limits import PixelLimits, parse_pixels

    limits = PixelLimits(**{kind: parse_pixels(value) for kind, value in (
        ("input", args.max_input_pixels), ("output", args.max_output_pixels)) if value})
    max_memory = parse_size(args.max_memory) if args.max_memory else None
    if max_memory:
        return_freed_memory()
    options = {"threads": args.threads} if args.threads else {}
    options |= {k: getattr(args, k) for k in SD_OPTIONS if getattr(args, k) is not None}
    backend, named = parse_variant(args.backend) if args.backend else (None, None)
    model_path, backend = resolve_runtime(args.model, backend, args.device)
    sr3, sd = backends_for(DENOISER), backends_for(SD_X4)
    if args.scale is not None and backend not in sr3:
        raise EdgesrError(f"--scale is for SR3 models (backend {' or '.join(sr3)}), not "
                          f"backend {backend!r}; to resize the output use --outscale")
    if (args.latent_tile, args.latent_overlap) != (None, None) and backend not in sd:
        raise EdgesrError(f"--latent-tile and --latent-overlap are for Stable Diffusion x4 "
                          f"folders (backend {' or '.join(sd)}), not backend {backend!r}")
    variant = f"{backend}:{named}" if named else backend  # open_runtime checks it vs --precision
    with open_runtime(str(model_path), variant, precision=args.precision, device=args.device,
                      **options) as runtime:
        info = runtime.info
        label = f"x{args.outscale or info.scale:g}"
        pairs = plan_outputs(Path(args.input), args.output and Path(args.output), label, args.ext)
        if not args.quiet:  # what runs: model, backend, device, precision (and why)
            print(f"edgesr: {runtime.describe()}; model {model_path.name}", file=sys.stderr)
        memory = None  # measured once for the whole run; a fixed input shape has no tile to pick
        if max_memory and info.dynamic:
            memory = measure_model_memory(model_path, backend, options,
                                          multiple=info.size_multiple)
        upscaler = Upscaler(runtime, tile=args.tile, overlap=args.overlap, batch=args.batch,
                            blend=args.blend, progress=not args.quiet)
        if args.consistency_map:
            return _with_map(upscaler, pairs, args)
        files = tqdm(total=len(pairs), unit="img", disable=args.quiet or len(pairs) < 2)

        def report(result) -> None:
            files.update()
            if result.error:
                error = result.error if str(result.source) in result.error else \
                    f"{result.source}: {result.error}"
                tqdm.write(f"edgesr: {'error' if len(pairs) == 1 else 'failed'}: {error}",
                           file=sys.stderr)
            elif not args.quiet:
                tqdm.write(f"{result.source} -> {result.target}")

        results = upscale_many(upscaler, pairs, report, outscale=args.outscale,
                               bit_depth=args.bit_depth, stream=args.stream,
                               max_memory=max_memory, model_memory=memory, limits=limits)
        files.close()
    failed = [r for r in results if r.error]
    if failed and len(results) > 1:
        print(f"edgesr: {len(failed)} of {len(results)} images failed", file=sys.stderr)
    return 1 if failed else 0


def _with_map(upscaler, pairs: list, args: argparse.Namespace) -> int:
    """Upscale one file and write its consistency map (``--consistency-map``)."""
    from edgesr.errors import EdgesrError
    from edgesr.fidelity import upscale_with_map

    if len(pairs) != 1:
        raise EdgesrError("--consistency-map takes one input image, not a folder")
    (source, target), map_path = pairs[0], Path(args.consistency_map)
    score = upscale_with_map(upscaler, source, target, map_path,
                             method=args.consistency_downsample, outscale=args.outscale,
                             bit_depth=args.bit_depth)
    print(f"{source} -> {target}; consistency {score:.2f} dB PSNR; map: {map_path}")
    return 0
