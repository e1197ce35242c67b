"""``edgesr upscale``: an image or a folder of images through a model, tile by tile."""

import argparse
import sys
from pathlib import Path

from edgesr.commands.jsonout import add_json_option, emit
from edgesr.commands.session_options import add_session_options
from edgesr.limits import (
    DEFAULT_INPUT_PIXELS,
    DEFAULT_OUTPUT_PIXELS,
    DEFAULT_STREAMED_OUTPUT_PIXELS,
)

#: ``-f/--format`` choices: ``imageio.IMAGE_EXTENSIONS`` without the dot (spelled out: imageio
#: imports NumPy and Pillow, which the parser must not; a test keeps the two equal).
FORMATS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "heic", "heif", "avif")


def register(sub) -> None:
    up = sub.add_parser("upscale", help="upscale an image or a folder of images")
    up.add_argument("input", help="an image file or a folder of images")
    up.add_argument("-o", "--output", help="output file or folder (default: beside the input)")
    add_session_options(up)
    up.add_argument("-s", "--outscale", type=float, default=None,
                    help="final scale, if other than the model's native scale: the output is "
                    "resized to it (not SR3's --scale, the factor the model upscales by)")
    up.add_argument("--bit-depth", type=int, choices=(8, 16), default=None,
                    help="output bit depth (default: the input's)")
    up.add_argument("--max-memory", metavar="SIZE", help="keep the process's peak memory "
                    "within SIZE, e.g. 2G, by picking the tile size per image from the model's "
                    "memory, measured once per model and backend (overrides --tile)")
    up.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                    help="write the output row band by row band, so memory stays flat in image "
                    "size: the default wherever it can (PNG and TIFF at the model's scale; "
                    "JPEG/WebP/HEIC/AVIF and --outscale hold the whole image, and say how much "
                    "memory). --stream: an error where it cannot; --no-stream: never")
    up.add_argument("-f", "--format", choices=FORMATS, help="output format of the files edgesr "
                    "names (default: the input's; as realesrgan-ncnn-vulkan's -f)")
    up.add_argument("--ext", help="output extension for folder runs, e.g. .png (--format is "
                    "the same for every run)")
    up.add_argument("--suffix", help="output name suffix: IMAGE_SUFFIX.EXT (as Real-ESRGAN's "
                    "--suffix; default: the scale, e.g. x4, beside a single input, none in an "
                    "output folder; '' for none)")
    up.add_argument("--quality", type=int, metavar="1-100", help="JPEG, WebP, AVIF and HEIC "
                    "quality (default: 95 for JPEG and WebP, where 100 is lossless WebP)")
    up.add_argument("-x", "--tta", action="store_true", help="8-fold test-time augmentation "
                    "(as realesrgan-ncnn-vulkan's -x): each tile runs flipped and rotated 8 ways "
                    "and the results are averaged; 8 times slower")
    add_json_option(up, "print one JSON document on stdout (per file: source, target, sizes, "
                    "seconds, error and what ran: model, backend, device, precision)")
    up.add_argument("--max-input-pixels", metavar="N", help="refuse (from the header, before "
                    "decoding) images with more pixels, e.g. 64M or 8000x8000; 0: no limit "
                    f"(default: {DEFAULT_INPUT_PIXELS // 10**6}M)")
    up.add_argument("--max-output-pixels", metavar="N", help="refuse images whose upscale has "
                    f"more pixels (default: {DEFAULT_OUTPUT_PIXELS // 10**6}M held in memory, "
                    f"{DEFAULT_STREAMED_OUTPUT_PIXELS // 10**6}M streamed)")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress and no notes "
                    "(progress is a bar on a terminal, plain lines otherwise)")
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

    if not args.json:
        return _run(args)
    report: dict = {"files": []}
    try:
        code = _run(args, report)
    except EdgesrError as exc:  # still one JSON document; main prints the line and exits 1
        report["error"] = str(exc)
        raise
    finally:
        emit(args, report)
    return code


def _run(args: argparse.Namespace, report: dict | None = None) -> int:
    """``edgesr upscale``; with ``report`` (``--json``), what ran and every file go into it."""
    from edgesr.errors import EdgesrError
    from edgesr.model_kinds import DENOISER, SD_X4, backends_for
    from edgesr.model_memory import measure_model_memory, return_freed_memory
    from edgesr.models.zoo import DEFAULT_MODEL
    from edgesr.pipeline import (
        open_runtime,
        parse_size,
        resolve_runtime,
        upscale_many,
    )
    from edgesr.progress import Progress
    from edgesr.runtimes.registry import parse_variant
    from edgesr.upscaler import Upscaler

    if args.consistency_map and (args.max_memory or args.stream):
        raise EdgesrError("--consistency-map holds the whole output and its map in memory; "
                          "it takes no --stream or --max-memory")
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise EdgesrError(f"--quality {args.quality}: a number from 1 to 100")
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
    if args.tta and backend in (*sr3, *sd):
        raise EdgesrError(f"--tta averages 8 runs of a feed-forward model; backend {backend!r} "
                          "samples a diffusion model (use --seed for another sample)")
    human = sys.stderr if report is not None else sys.stdout
    variant = f"{backend}:{named}" if named else backend  # open_runtime checks it vs --precision
    with open_runtime(str(model_path), variant, precision=args.precision, device=args.device,
                      **options) as runtime:
        info = runtime.info
        label = f"x{args.outscale or info.scale:g}"
        pairs = _plan(args, label)
        ran = {"model": args.model or DEFAULT_MODEL, "model_file": str(model_path),
               "backend": runtime.name, "device": info.device or None,
               "precision": info.precision}
        if report is not None:
            report.update(ran)
        if not args.quiet:  # what runs: model, backend, device, precision (and why)
            print(f"edgesr: {runtime.describe()}; model {model_path.name}", file=sys.stderr)
        memory = None  # measured once for the whole run; a fixed input shape has no tile to pick
        if max_memory and info.dynamic:
            memory = measure_model_memory(model_path, backend, runtime.options,
                                          multiple=info.size_multiple)
        upscaler = Upscaler(runtime, tile=args.tile, overlap=args.overlap, batch=args.batch,
                            blend=args.blend, progress=not args.quiet, tta=args.tta)
        if args.consistency_map:
            return _with_map(upscaler, pairs, args, report, human)
        files = Progress(len(pairs), unit="img", desc="images",
                         enabled=not args.quiet and len(pairs) > 1)
        noted: set[str] = set()

        def whole_image(source: Path, why: str, need: float) -> None:
            if not args.quiet and why not in noted:
                noted.add(why)
                amount = f"{need / 1e9:.1f} GB" if need >= 1e9 else f"{need / 1e6:.0f} MB"
                files.write(f"edgesr: {source.name}: not streamed: {why}; upscaling it in memory "
                            f"takes about {amount}", file=sys.stderr)

        def done(result) -> None:
            files.update()
            if report is not None:
                report["files"].append(_file_entry(result, ran))
            if result.error:
                error = result.error if str(result.source) in result.error else \
                    f"{result.source}: {result.error}"
                files.write(f"edgesr: {'error' if len(pairs) == 1 else 'failed'}: {error}",
                            file=sys.stderr)
            elif not args.quiet:
                files.write(f"{result.source} -> {result.target}", file=human)

        with files:
            results = upscale_many(upscaler, pairs, done, outscale=args.outscale,
                                   bit_depth=args.bit_depth, stream=args.stream,
                                   quality=args.quality, max_memory=max_memory,
                                   model_memory=memory, limits=limits,
                                   on_whole_image=whole_image)
    failed = [r for r in results if r.error]
    if report is not None:
        report["failed"] = len(failed)
    if failed and len(results) > 1:
        print(f"edgesr: {len(failed)} of {len(results)} images failed", file=sys.stderr)
    return 1 if failed else 0


def _plan(args: argparse.Namespace, label: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs from the naming flags: -o, --ext, -f/--format, --suffix; checked
    against --format and --quality."""
    from edgesr.errors import EdgesrError
    from edgesr.imageio import QUALITY_FORMATS, image_format
    from edgesr.pipeline import plan_outputs

    ext = args.ext
    if args.format:
        wanted = f".{args.format}"
        if ext is not None and image_format(f"x.{ext.lstrip('.')}") != image_format(wanted):
            raise EdgesrError(f"--ext {ext} and --format {args.format} disagree; give one")
        ext = wanted
    pairs = plan_outputs(Path(args.input), args.output and Path(args.output), label, ext,
                         args.suffix)
    if args.format:
        for _, target in pairs:
            if image_format(target) != image_format(f"x{ext}"):
                raise EdgesrError(f"-o {target} is not {args.format.upper()}, as --format "
                                  f"{args.format} asks; name a .{args.format} file or a folder")
    if args.quality is not None and not any(image_format(t) in QUALITY_FORMATS
                                            for _, t in pairs):
        raise EdgesrError(f"--quality is for JPEG, WebP, AVIF and HEIC output, and "
                          f"{pairs[0][1].name} is {image_format(pairs[0][1])}")
    return pairs


def _file_entry(result, ran: dict) -> dict:
    """One file of the ``--json`` document."""
    size = lambda wh: None if wh is None else {"width": wh[0], "height": wh[1]}  # noqa: E731
    return {"source": str(result.source),
            "target": None if result.target is None else str(result.target),
            "size_in": size(result.size_in), "size_out": size(result.size_out), **ran,
            "streamed": result.streamed, "seconds": result.seconds, "error": result.error}


def _with_map(upscaler, pairs: list, args: argparse.Namespace, report: dict | None,
              human) -> int:
    """Upscale one file and write its consistency map (``--consistency-map``), in memory."""
    import time

    from edgesr.errors import EdgesrError
    from edgesr.fidelity import upscale_with_map

    if len(pairs) != 1:
        raise EdgesrError("--consistency-map takes one input image, not a folder")
    (source, target), map_path = pairs[0], Path(args.consistency_map)
    if not args.quiet:
        print(f"edgesr: {source.name}: not streamed: --consistency-map compares the whole "
              "output with the input", file=sys.stderr)
    started = time.perf_counter()
    score = upscale_with_map(upscaler, source, target, map_path,
                             method=args.consistency_downsample, outscale=args.outscale,
                             bit_depth=args.bit_depth)
    if report is not None:
        report["files"].append({"source": str(source), "target": str(target),
                                "seconds": time.perf_counter() - started, "error": None,
                                "consistency_psnr": score, "map": str(map_path)})
        report["failed"] = 0
    print(f"{source} -> {target}; consistency {score:.2f} dB PSNR; map: {map_path}", file=human)
    return 0
