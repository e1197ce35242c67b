"""The OpenVINO sampler sessions' memory bound at small scale: a graph with one oversized layer
(a 128 MiB MatMul weight, as external data like the real SD x4 UNet's) is converted to an IR and
compiled in fresh processes, and the growth of each one's peak RSS is counted in copies of the
weights. Measured: IR build 1.05 copies; compile at f32 2.23 copies (the file's mapped pages
and the CPU plugin's repacked MatMul weights; compiling from the path or from ``read_model``
measured the same). At real size (benchmarks/bench_diffusion_memory.py): 1.00 and 1.26 (BF16)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino is not installed: pip install openvino")
onnx = pytest.importorskip("onnx")
ROWS, COLS = 4096, 8192
WEIGHT_BYTES = ROWS * COLS * 4
PHASE = textwrap.dedent('''
    import sys
    from pathlib import Path

    import openvino as ov

    from edgesr.diffusion.openvino_sessions import build, compile_ir
    from edgesr.runtimes.engine_cache import BuildOptions

    def peak():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) * 1024

    phase, source, ir = sys.argv[1:]
    core, before = ov.Core(), peak()
    if phase == "build":
        build(Path(source), Path(ir), BuildOptions(precision="fp32"))
    else:
        compiled = compile_ir(core, Path(ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    print(peak() - before)
''')


def _copies(phase: str, source, ir) -> float:
    run = subprocess.run([sys.executable, "-c", PHASE, phase, str(source), str(ir)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return int(run.stdout.split()[-1]) / WEIGHT_BYTES


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_one_oversized_layer_is_held_once_to_build_and_about_twice_to_compile(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((ROWS, COLS), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", ROWS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", COLS])],
        [numpy_helper.from_array(weight, "w")])
    del weight
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(tmp_path / "big.onnx"), save_as_external_data=True,
                    location="big.onnx.data")
    del model, graph
    assert _copies("build", tmp_path / "big.onnx", tmp_path / "model.xml") < 1.5
    assert _copies("compile", tmp_path / "big.onnx", tmp_path / "model.xml") < 2.6
