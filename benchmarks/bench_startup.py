"""Start-up cost of ``edgesr upscale``: a tiny image through a tiny built ONNX model, before and
after the lean imports, in one run.

    python benchmarks/bench_startup.py [--runs 5] [--model tiny.onnx]

Each case is a fresh ``python -c`` process running the CLI (``edgesr.cli.main``) on a 16x16
PNG, so its wall time is all start-up: interpreter, imports, session creation, one tile, the
write. Cases:

- ``after``: the CLI as it is (nothing on the ONNX path imports PyTorch).
- ``before``: the same with ``import torch`` first, which is what the CLI paid when
  ``upscaler.py`` imported torch for its bicubic resize (torch installed).
- ``import-only``: ``import edgesr.cli`` alone, the floor under both.

Per case: median and min wall time over ``--runs`` processes, and from one more process run
with ``python -X importtime``: the total import time and the packages that took most of it
(cumulative microseconds of each top-level import). The model is a 3 -> 12 channel 3x3 conv
and a depth-to-space (x2), written with onnx.helper, so the network costs nothing.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgesr.export.specs import encode_metadata

CLI = "from edgesr.cli import main; import sys; sys.exit(main({argv!r}))"
CASES = {
    "after": CLI,
    "before": "import torch; " + CLI,
    "import-only": "import edgesr.cli",
}


def tiny_onnx(path: Path) -> Path:
    """A x2 model: Conv(3 -> 12, 3x3, pad 1) then DepthToSpace(2), with edgesr metadata."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 0.1, (12, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("DepthToSpace", ["c"], ["output"], blocksize=2, mode="CRD")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                      ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                       ["batch", 3, "out_height", "out_width"])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, encode_metadata(
        {"arch": "tiny", "scale": 2, "in_channels": 3, "out_channels": 3, "size_multiple": 1}))
    onnx.save(model, str(path))
    return path


def import_profile(code: str, top: int = 6) -> dict:
    """Total import time (s) and the slowest top-level imports of ``python -X importtime``."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                         text=True)
    tops: dict[str, int] = {}
    total = 0
    for line in run.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # not an importtime line, or its header
        name, cumulative = parts[2], int(parts[1])
        if len(name) - len(name.lstrip()) != 1:
            continue  # a nested import, counted in its parent's cumulative time
        total += cumulative
        package = name.strip().partition(".")[0]
        tops[package] = tops.get(package, 0) + cumulative
    slowest = sorted(tops.items(), key=lambda kv: -kv[1])[:top]
    return {"import_s": total / 1e6, "slowest": {k: v / 1e6 for k, v in slowest}}


def wall_times(code: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per case (default: 5)")
    parser.add_argument("--model", type=Path, help="an ONNX model (default: a tiny x2 one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = args.model or tiny_onnx(d / "tiny.onnx")
        Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(d / "in.png")
        argv = ["upscale", str(d / "in.png"), "-o", str(d / "out.png"), "-m", str(model), "-q"]
        results = {}
        for case, template in CASES.items():
            code = template.format(argv=argv)
            times = wall_times(code, args.runs)
            results[case] = {"wall_median_s": statistics.median(times), "wall_min_s": min(times),
                             **import_profile(code)}
        if not (d / "out.png").is_file():
            raise SystemExit("bench_startup: the upscale wrote no output")
    print(f"{'case':<12} {'wall p50':>9} {'wall min':>9} {'imports':>8}  slowest imports")
    for case, row in results.items():
        slowest = ", ".join(f"{k} {v:.2f}" for k, v in row["slowest"].items())
        print(f"{case:<12} {row['wall_median_s']:>8.2f}s {row['wall_min_s']:>8.2f}s "
              f"{row['import_s']:>7.2f}s  {slowest}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
