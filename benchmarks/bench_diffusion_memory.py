"""Peak memory of the SD x4 UNet's way to an engine: export, OpenVINO IR build, session creation.

    python benchmarks/bench_diffusion_memory.py [--config real|tiny] [--workdir DIR] [--json OUT]

``real`` is the stabilityai/stable-diffusion-x4-upscaler UNet and VAE at their real size with
random weights (configs in ``bench_sd_upscaler``; the UNet is ~1.8 GiB in FP32, stored as
external data). Each phase runs in a spawned process of its own and reports its peak RSS
(``VmHWM``) and its RSS when done, next to the size of the UNet's weights, so "copies of the
weights held at once" reads as peak / weights:

- ``export``: ``export_sd_upscaler`` (diffusers load, trace, write, parity run);
- ``openvino-ir fp32`` / ``fp16``: the sd-upscaler-openvino engine build of ``unet.onnx``;
- ``openvino session``: compiling the FP32 IR (what an ``upscale`` run does), BF16 hint;
- ``onnxruntime session``: an ONNX Runtime session on ``unet.onnx``.

Memory is meaningful under load (time is not; none is reported). Only one real-size run at a
time on a shared machine: it needs about 8 GiB.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sd_upscaler import SEED, isolated, write_source  # noqa: E402


def baseline_phase() -> dict:
    """The libraries alone (what every phase pays before touching a weight)."""
    import diffusers  # noqa: F401
    import onnxruntime  # noqa: F401
    import openvino  # noqa: F401

    import edgesr.export.sd_upscaler  # noqa: F401
    return {}


def export_phase(source: Path, export: Path) -> dict:
    from edgesr.export.sd_upscaler import export_sd_upscaler

    export_sd_upscaler(source, export)
    return {}


def ir_phase(unet: Path, target: Path, precision: str) -> dict:
    from edgesr.diffusion.openvino_sessions import build
    from edgesr.runtimes.engine_cache import BuildOptions

    build(unet, target, BuildOptions(precision=precision))
    return {"ir_mb": sum(p.stat().st_size for p in target.parent.glob(target.stem + ".*"))
            / 2**20}


def openvino_session_phase(ir: Path, precision: str) -> dict:
    import openvino as ov

    from edgesr.diffusion.openvino_sessions import compile_ir

    compiled = compile_ir(ov.Core(), ir, "CPU", {"INFERENCE_PRECISION_HINT": precision})
    return {"ran": compiled.get_property("INFERENCE_PRECISION_HINT").to_string()}


def onnxruntime_session_phase(unet: Path) -> dict:
    from edgesr.diffusion.sessions import onnxruntime_sessions

    onnxruntime_sessions("sd-upscaler", device="cpu")(unet)
    return {}


def measured(phase, *args) -> dict:
    """``phase(*args)`` plus the RSS it leaves (what it still holds once done)."""
    import psutil

    result = phase(*args)
    return {**result, "rss_after_mb": psutil.Process().memory_info().rss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("real", "tiny"), default="real")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workdir or Path(tmp)) / f"memory-{args.config}"
        source, export = root / "source", root / "onnx"
        params = isolated(write_source, args.config, source)["params"]
        unet = export / "unet.onnx"
        phases = {"libraries only": isolated(measured, baseline_phase),
                  "export": isolated(measured, export_phase, source, export)}
        weights = sum(p.stat().st_size for p in export.glob("unet.onnx*"))
        for precision in ("fp32", "fp16"):
            phases[f"openvino-ir {precision}"] = isolated(
                measured, ir_phase, unet, root / f"ir-{precision}" / "model.xml", precision)
        phases["openvino session (bf16 hint)"] = isolated(
            measured, openvino_session_phase, root / "ir-fp32" / "model.xml", "bf16")
        phases["onnxruntime session"] = isolated(measured, onnxruntime_session_phase, unet)
    print(f"config {args.config} (seed {SEED}): UNet {params['unet']:,} parameters, "
          f"unet.onnx + data {weights / 2**20:.0f} MiB")
    base = phases["libraries only"]["peak_rss_mb"]
    print("| phase | peak RSS MiB | (peak - libraries) / UNet weights | RSS after MiB |")
    print("|---|---|---|---|")
    for name, p in phases.items():
        copies = (p["peak_rss_mb"] - base) * 2**20 / weights
        print(f"| {name} | {p['peak_rss_mb']:.0f} | {copies:.2f} | {p['rss_after_mb']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"config": args.config, "params": params,
                                         "unet_bytes": weights, "phases": phases}, indent=2))


if __name__ == "__main__":
    main()
