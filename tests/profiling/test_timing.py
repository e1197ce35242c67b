"""Timing primitives, FLOP counting, GEMM peak and system info."""

import mmap
import time

import numpy as np
from stub_runtimes import NearestRuntime
from tiny_models import make_tiny

from edgesr.models import ModelDescriptor
from edgesr.profiling.flops import flops_per_lr_pixel, gemm_peak_gflops, onnx_flops_per_lr_pixel
from edgesr.profiling.system import INTERESTING_FLAGS, system_info
from edgesr.profiling.timing import InferTimer, LatencyStats, MemoryWatch, time_calls


def test_latency_stats_percentiles():
    stats = LatencyStats.from_seconds([i / 1000 for i in range(1, 101)])
    assert stats.runs == 100
    assert abs(stats.p50_ms - 50.5) < 1e-9 and abs(stats.p99_ms - 99.01) < 1e-9
    assert stats.p50_ms <= stats.p95_ms <= stats.p99_ms and stats.min_ms == 1.0


def test_time_calls_warms_up_then_times():
    calls = []
    samples = time_calls(lambda: calls.append(time.sleep(0.001)), warmup=2, runs=3)
    assert len(calls) == 5 and len(samples) == 3 and min(samples) >= 0.001


def test_infer_timer_counts_only_infer_time():
    with NearestRuntime(scale=2) as inner:
        timer = InferTimer(inner).activate()
        out = timer.infer(np.zeros((2, 3, 8, 8), np.float32))
        assert out.shape == (2, 3, 16, 16) and timer.calls == 1 and timer.seconds > 0
        assert timer.info.scale == 2 and timer.name == "stub"
        timer.reset()
        assert timer.seconds == 0 and timer.calls == 0


def test_memory_watch_sees_an_allocation():
    with MemoryWatch() as before:
        pass
    with MemoryWatch() as during:
        # 64 MiB of fresh anonymous pages, touched: a NumPy block could reuse heap pages that
        # are still resident (after return_freed_memory's mallopt in an earlier test).
        block = mmap.mmap(-1, 64 << 20)
        np.frombuffer(block, np.uint8)[::4096] = 1
        time.sleep(0.02)
    block.close()
    assert during.peak_rss_mb > before.peak_rss_mb + 32
    assert during.gpu_peak_mb is None  # CPU-only torch here


def test_flops_per_pixel_matches_the_conv_count():
    model = make_tiny("compact_x4")  # convs 3->16, 4 x 16->16, 16->48 (3 x 4 x 4), all 3x3
    desc = ModelDescriptor(model=model, architecture="SRVGGNetCompact", scale=4, in_channels=3,
                           out_channels=3)
    assert flops_per_lr_pixel(desc) == 2 * 9 * (3 * 16 + 4 * 16 * 16 + 16 * 48)


def test_onnx_flops_count_convs_at_any_input_size(tmp_path):
    from onnx import TensorProto, helper, numpy_helper, save

    w1 = numpy_helper.from_array(np.zeros((16, 3, 3, 3), np.float32), "w1")
    w2 = numpy_helper.from_array(np.zeros((12, 16, 3, 3), np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["h", "w2"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("DepthToSpace", ["y"], ["z"], blocksize=2)]
    graph = helper.make_graph(
        nodes, "x2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [w1, w2])
    path = tmp_path / "x2.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert onnx_flops_per_lr_pixel(path) == 2 * 9 * (3 * 16 + 16 * 12)
    path.write_bytes(b"not onnx")
    assert onnx_flops_per_lr_pixel(path) is None


def test_gemm_peak_is_positive():
    peak = gemm_peak_gflops(n=128, repeats=2)
    assert set(peak) == {"torch", "numpy"} and min(peak.values()) > 0


def test_system_info_fields():
    info = system_info()
    assert info["cpu"]["model"] and info["cpu"]["logical_cores"] >= 1
    assert set(info["cpu"]["flags"]) <= set(INTERESTING_FLAGS)
    assert "torch" in info["libraries"] and info["threads"]["torch_intra_op"] >= 1
