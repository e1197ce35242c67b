"""A model's memory per tile, measured in child processes: positive, larger for a heavier model,
cached per model file, backend and options, and a failing child is a clear error."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from stub_runtimes import NearestRuntime
from tiny_models import make_tiny

from edgesr import model_memory
from edgesr.model_memory import MemoryMeasureError, fit, measure_model_memory
from edgesr.pipeline import _budget_tile
from edgesr.upscaler import Upscaler


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "memory"


@pytest.fixture
def children(monkeypatch) -> list:
    """The child processes ``measure_model_memory`` starts, one entry each."""
    started, run_child = [], model_memory._run_child

    def counted(*args):
        started.append(args)
        return run_child(*args)

    monkeypatch.setattr(model_memory, "_run_child", counted)
    return started


def _checkpoint(folder, name):
    path = folder / f"{name}.pth"
    torch.save({"params": make_tiny(name).state_dict()}, path)
    return path


def test_fit_lies_on_or_above_both_points_and_rises_at_least_as_fast():
    for points in ([(1024, 10e6), (16384, 20e6)], [(1024, 1e6), (16384, 30e6)]):
        (p1, d1), (p2, d2) = points
        memory = fit(points)
        assert memory.bytes_for(p1) >= d1 * (1 - 1e-9) and memory.bytes_for(p2) >= d2 * (1 - 1e-9)
        assert memory.bytes_per_pixel >= (d2 - d1) / (p2 - p1) and memory.fixed_bytes >= 0


def test_measured_once_and_larger_for_a_heavier_model(tmp_path, cache, children, capsys):
    light, heavy = _checkpoint(tmp_path, "compact_x2"), _checkpoint(tmp_path, "rrdb_x4")
    first = measure_model_memory(light, "torch")
    assert "measuring compact_x2.pth memory on torch (once; cached)" in capsys.readouterr().err
    assert first.bytes_per_pixel > 0 and first.fixed_bytes >= 0
    assert len(children) == 2 and len(list(cache.glob("*.json"))) == 1

    assert measure_model_memory(light, "torch") == first  # from the cache: no child
    assert len(children) == 2 and capsys.readouterr().err == ""

    # A x4 RRDB runs its 16-feature convolutions at 4x and 16x the pixels; the x2 compact
    # model at the input's. Measured here: about 4.7 KB vs 1.1 KB per input pixel.
    assert measure_model_memory(heavy, "torch").bytes_per_pixel > 2 * first.bytes_per_pixel


def test_other_options_or_backend_are_other_cache_entries(tmp_path, cache, children):
    light = _checkpoint(tmp_path, "compact_x2")
    measure_model_memory(light, "torch")
    measure_model_memory(light, "torch", {"threads": 1})
    measure_model_memory(light, "torch", {"threads": 0})  # the default: the first entry
    assert len(children) == 4 and len(list(cache.glob("*.json"))) == 2
    pytest.importorskip("openvino")
    onnx = tmp_path / "light.onnx"
    onnx.write_bytes(b"the key reads the bytes, not the model")
    keys = {model_memory._cache_key(onnx, backend, {}) for backend in ("onnxruntime", "openvino")}
    assert len(keys) == 2


def test_failing_child_is_a_clear_error_and_nothing_is_cached(tmp_path, cache):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(MemoryMeasureError, match=r"bad\.pth on torch at tile 32: .*bad\.pth"):
        measure_model_memory(bad, "torch")
    assert not cache.exists() or not list(cache.iterdir())


def test_diffusion_backends_are_measured_with_few_steps_and_never_planned_past_it(
        tmp_path, cache, monkeypatch):
    """Memory per tile of a sampling loop does not depend on its step count, but grows faster
    than the tile's pixels: measured with MEASURE_STEPS, capped at the largest measured tile."""
    seen = []

    def fake_child(model_path, backend, options, tile):
        seen.append((backend, options["steps"], options["seed"]))
        return 1e6 + 1e3 * tile * tile

    monkeypatch.setattr(model_memory, "_run_child", fake_child)
    folder = tmp_path / "sdx4_onnx"
    folder.mkdir()
    (folder / "unet.onnx").write_bytes(b"graph")
    memory = measure_model_memory(folder, "sd-upscaler", {"steps": 50, "seed": 3}, multiple=8)
    assert seen == [("sd-upscaler", model_memory.MEASURE_STEPS, 3)] * 2
    assert memory.largest_tile == 128
    again = measure_model_memory(folder, "sd-upscaler", {"steps": 20, "seed": 3}, multiple=8)
    assert again == memory and len(seen) == 2  # any step count: the same cached figure
    pixels = np.zeros((4000, 4000, 3), np.uint8)
    with NearestRuntime(scale=4) as runtime:
        upscaler = Upscaler(runtime, tile=256, overlap=8)
        plan = [_budget_tile(upscaler, pixels, 64e9, m, True, None, 8)
                for m in (memory, replace(memory, largest_tile=None))]
    assert plan[0] == 128 < plan[1]  # an upscaler's model is planned past 128; a sampler is not
