"""Start of an OpenVINO engine built by ``edgesr build --tile``: importing the device-compiled
model kept beside the IR, loading it from OpenVINO's model cache, and compiling the IR, in one
run.

    python benchmarks/bench_openvino_start.py [--model realesrgan-x4plus] [--tile 256]
        [--precision fp16] [--runs 5] [--json out.json]

The model (a bundled name, checkpoint or .onnx) is built once with ``edgesr build -b openvino
--tile T -o DIR/engine.xml``; a copy of the IR without its compiled model is the "compiled"
case, opened with OpenVINO's model cache off ("compiled") and on ("cached", its cache filled by
one untimed process first). Each run is a fresh Python process that opens ``OpenVINORuntime`` on
one of them,
activates it and runs one tile, timing activate + first tile; it reports which path it took
(``compiled_by``), so a case that did not take its path is an error, not a figure. Per case:
median and min seconds over ``--runs`` processes.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
import numpy as np
start = time.perf_counter()
from edgesr.runtimes.openvino_runtime import OpenVINOConfig, OpenVINORuntime
rt = OpenVINORuntime(sys.argv[1], OpenVINOConfig(compile_cache=sys.argv[2] == "cached"))
rt.activate()
h, w = rt.info.fixed_hw
rt.infer(np.zeros((1, rt.info.in_channels, h, w), np.float32))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "compiled_by": rt.compiled_by,
                  "precision": rt.info.precision, "note": rt.info.precision_note}))
rt.deactivate()
"""


def build(model: str, tile: int, precision: str, folder: Path) -> Path:
    """``edgesr build`` the model into ``folder/engine.xml``; its path (the command's stdout)."""
    done = subprocess.run(
        [sys.executable, "-m", "edgesr.cli", "build", model, "-b", "openvino", "-p", precision,
         "--tile", str(tile), "-o", str(folder / "engine.xml"), "--cache", str(folder / "c")],
        capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"edgesr build failed: {done.stderr.strip()}")
    return Path(done.stdout.strip())


def without_compiled_model(xml: Path) -> Path:
    """A copy of IR ``xml`` (its .xml and .bin only)."""
    bare = xml.with_name("bare.xml")
    shutil.copy(xml.with_suffix(".bin"), bare.with_suffix(".bin"))
    shutil.copy(xml, bare)
    return bare


def time_case(xml: Path, expect: str, runs: int) -> dict:
    """``runs`` fresh processes starting ``xml`` the ``expect`` way (after one untimed process
    that fills OpenVINO's model cache, for "cached")."""
    samples, last = [], {}
    for run in range(runs + (expect == "cached")):
        done = subprocess.run([sys.executable, "-c", CHILD, str(xml), expect],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{xml.name}: {done.stderr.strip()[-500:]}")
        last = json.loads(done.stdout.strip().splitlines()[-1])
        if expect == "cached" and run == 0:
            continue
        if last["compiled_by"] != expect:
            raise SystemExit(f"{xml.name}: expected the {expect} path, took {last['compiled_by']}"
                             f" ({last['note']})")
        samples.append(last["seconds"])
    return {"compiled_by": expect, "precision": last["precision"], "runs": runs,
            "median_s": statistics.median(samples), "min_s": min(samples), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="realesrgan-x4plus")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--precision", default="fp16", choices=("fp32", "fp16"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGESR_CACHE"] = str(Path(tmp) / "cache")  # OpenVINO's model cache there
        xml = build(args.model, args.tile, args.precision, Path(tmp))
        bare = without_compiled_model(xml)
        results = {"model": args.model, "tile": args.tile, "precision": args.precision,
                   "imported": time_case(xml, "imported", args.runs),
                   "cached": time_case(bare, "cached", args.runs),
                   "compiled": time_case(bare, "compiled", args.runs)}
    for case in ("imported", "cached", "compiled"):
        r = results[case]
        print(f"{case:<9} median {r['median_s']:.3f} s  min {r['min_s']:.3f} s  "
              f"({r['runs']} processes, ran {r['precision']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
