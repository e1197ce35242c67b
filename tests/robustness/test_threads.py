"""One activated runtime shared by 8 threads, for every backend available here: each call's
output equals the serial output for its input."""

import importlib.util
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from faults import count, run_bounded, tally

from edgesr.export.onnx_export import export_onnx
from edgesr.models import load_model
from edgesr.runtimes import create_runtime

BACKENDS = ("torch", "onnxruntime", "openvino")


@pytest.mark.parametrize("backend", BACKENDS)
def test_eight_threads_on_one_runtime_equal_serial(tmp_path, tiny_x2, backend):
    if not importlib.util.find_spec(backend):
        pytest.skip(f"{backend} is not installed")
    model = tiny_x2 if backend == "torch" else export_onnx(
        load_model(tiny_x2), tmp_path / "m.onnx", check=False).path
    calls = 8 * count(10, 50)
    inputs = np.random.default_rng(1).random((calls, 1, 3, 16, 16), dtype=np.float32)
    with create_runtime(backend, model) as runtime:
        serial = [runtime.infer(x) for x in inputs]
        with ThreadPoolExecutor(8) as pool:
            threaded = run_bounded(lambda: list(pool.map(runtime.infer, inputs)))
    wrong = sum(not np.array_equal(a, b) for a, b in zip(threaded, serial, strict=True))
    tally(f"threads-{backend}", threads=8, calls=calls, differ_from_serial=wrong)
    assert wrong == 0
