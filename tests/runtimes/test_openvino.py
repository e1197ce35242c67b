"""OpenVINO backend: FP32/FP16 IR parity with PyTorch, tile reshape, async requests, errors."""

import numpy as np
import onnx
import pytest
import torch
from tiny_models import make_tiny

pytest.importorskip("openvino", reason="openvino is not installed (pip install edgesr[openvino])")

from edgesr.errors import BackendUnavailableError, EdgesrError, InferenceError  # noqa: E402
from edgesr.export.onnx_export import export_onnx  # noqa: E402
from edgesr.fidelity import psnr  # noqa: E402
from edgesr.models import model_from_state_dict  # noqa: E402
from edgesr.runtimes import create_runtime  # noqa: E402
from edgesr.runtimes.openvino_runtime import (  # noqa: E402
    OpenVINOConfig,
    OpenVINORuntime,
    build_ir,
)

#: (max abs diff, min PSNR dB) against PyTorch FP32. FP16-compressed weights are rounded to
#: 11 significant bits, so their outputs move by ~1e-4 on these random tiny models.
THRESHOLDS = {"fp32": (1e-5, 100.0), "fp16": (1e-3, 65.0)}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """family -> (descriptor, onnx path), exported once per module."""
    folder = tmp_path_factory.mktemp("ov")
    out = {}
    for family in ("rrdb_x2", "compact_x4"):
        desc = model_from_state_dict(make_tiny(family).state_dict())
        export_onnx(desc, folder / f"{family}.onnx", check=False)
        out[family] = desc, folder / f"{family}.onnx"
    return out


def reference(desc, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return desc.model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("family", ["rrdb_x2", "compact_x4"])
def test_ir_parity_with_torch(models, tmp_path, family, precision):
    desc, onnx_path = models[family]
    xml = build_ir(onnx_path, tmp_path / f"{family}.xml", precision=precision)
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    x = np.random.default_rng(0).random((3, 3, 24, 32), np.float32)
    with OpenVINORuntime(xml, OpenVINOConfig(num_requests=2, precision="fp32")) as rt:
        assert (rt.info.scale, rt.info.size_multiple) == (desc.scale, desc.size_multiple)
        out = rt.infer(x)
        assert rt.info.precision == "fp32"
    ref = reference(desc, x)
    max_diff, min_psnr = THRESHOLDS[precision]
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < max_diff
    assert psnr(out, ref, cap=None) > min_psnr


def test_fp16_ir_is_smaller(models, tmp_path):
    _, onnx_path = models["compact_x4"]
    fp32 = build_ir(onnx_path, tmp_path / "a.xml", precision="fp32").with_suffix(".bin")
    fp16 = build_ir(onnx_path, tmp_path / "b.xml", precision="fp16").with_suffix(".bin")
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size


def test_onnx_direct_with_tile_reshape_and_registry(models):
    desc, onnx_path = models["compact_x4"]
    x = np.random.default_rng(1).random((5, 3, 16, 16), np.float32)
    rt = create_runtime("openvino", onnx_path, tile=(16, 16), num_requests=3,
                        performance="throughput")
    with rt:
        assert rt.info.fixed_hw == (16, 16) and rt.info.preferred_batch == 3
        out = rt.infer(x)
        with pytest.raises(InferenceError, match="reshaped to tile"):
            rt.infer(x[:, :, :8])
    np.testing.assert_allclose(out, reference(desc, x), atol=1e-4)


def test_ir_without_edgesr_metadata_is_probed(models, tmp_path):
    desc, onnx_path = models["rrdb_x2"]
    stripped = onnx.load(str(onnx_path))
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / "bare.onnx"))
    with OpenVINORuntime(tmp_path / "bare.onnx") as rt:
        assert (rt.info.scale, rt.info.size_multiple, rt.info.out_channels) == (2, 2, 3)


def test_errors_are_edgesr_errors(models, tmp_path):
    _, onnx_path = models["compact_x4"]
    with pytest.raises(EdgesrError, match="precision"):
        OpenVINOConfig(precision="int4")
    with pytest.raises(EdgesrError, match="INT8"):
        build_ir(onnx_path, tmp_path / "x.xml", precision="int8")
    with pytest.raises(BackendUnavailableError, match="NOSUCH"):
        OpenVINORuntime(onnx_path, OpenVINOConfig(device="NOSUCH")).activate()
    (tmp_path / "junk.xml").write_text("<not-an-ir/>")
    with pytest.raises(EdgesrError, match="cannot read"):
        OpenVINORuntime(tmp_path / "junk.xml").activate()


def test_pipeline_routes_checkpoints_and_irs(models, tmp_path, monkeypatch):
    from edgesr.pipeline import open_runtime

    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    desc, onnx_path = models["compact_x4"]
    ckpt = tmp_path / "compact_x4.pth"
    torch.save({"params_ema": desc.model.state_dict()}, ckpt)
    x = np.random.default_rng(2).random((1, 3, 16, 16), np.float32)
    with open_runtime(str(ckpt), "openvino") as rt:  # exported to a cached ONNX first
        np.testing.assert_allclose(rt.infer(x), reference(desc, x), atol=1e-4)
    xml = build_ir(onnx_path, tmp_path / "m.xml")
    assert open_runtime(str(xml)).name == "openvino"
    with pytest.raises(EdgesrError, match="openvino engine"):
        open_runtime(str(xml), "torch")


def test_onnx_builds_its_ir_through_the_engine_cache(models, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    desc, onnx_path = models["compact_x4"]
    x = np.random.default_rng(3).random((1, 3, 16, 16), np.float32)
    irs = {}
    for precision in ("fp32", "fp16", "fp32"):  # the second fp32 run finds the first one's IR
        with create_runtime("openvino", onnx_path, precision=precision) as rt:
            irs.setdefault(precision, set()).add(rt.ir_path())
            atol = THRESHOLDS[precision][0] * 10  # an f16 hint on top of the FP16 IR's weights
            np.testing.assert_allclose(rt.infer(x), reference(desc, x), atol=atol)
    entries = sorted(p.parent.name for p in (tmp_path / "cache" / "engines" / "openvino")
                     .glob("*/model.xml"))
    assert len(entries) == 2 and [len(v) for v in irs.values()] == [1, 1]
    assert "-fp32-" in entries[1] and "-fp16-" in entries[0]


def test_one_runtime_shared_by_threads_returns_each_call_its_own_output(models):
    """8 threads x 50 calls on one activated runtime: every call gets exactly the output a
    serial call gives for its own input (no "Infer Request is busy", no other call's tile)."""
    from concurrent.futures import ThreadPoolExecutor

    _, path = models["compact_x4"]
    inputs = np.random.default_rng(0).random((400, 1, 3, 16, 16), dtype=np.float32)
    with OpenVINORuntime(path, OpenVINOConfig(num_requests=2)) as runtime:
        serial = [runtime.infer(x) for x in inputs]
        with ThreadPoolExecutor(8) as pool:
            threaded = list(pool.map(runtime.infer, inputs))
    wrong = sum(not np.array_equal(a, b) for a, b in zip(threaded, serial, strict=True))
    assert wrong == 0, f"{wrong} of 400 threaded calls differ from serial"


@pytest.mark.parametrize("name, content", [("junk.xml", b"garbage"), ("junk.onnx", b"\x08garb")])
def test_read_failures_say_why_not_where(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(EdgesrError) as info:
        OpenVINORuntime(tmp_path / name).activate()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / name}: OpenVINO cannot read it: ")
    assert "Exception from src/" not in message and not message.endswith(":")


@pytest.mark.parametrize("family", ["rrdb_x2", "compact_x4"])
def test_static_shapes_compiled_per_tile_stay_exact(models, family):
    """Tiles of one image compile one static model per shape, reused across calls, and the
    image equals PyTorch FP32 on the same tiles within 1e-4."""
    from edgesr.upscaler import Upscaler

    desc, onnx_path = models[family]
    image = np.random.default_rng(4).random((40, 28, 3), np.float32)
    with create_runtime("openvino", onnx_path, precision="fp32") as rt:
        assert rt.compiled is None  # nothing compiled before a shape is seen
        out = Upscaler(rt, tile=24, overlap=4).upscale(image)
        shapes = list(rt._shapes)
        Upscaler(rt, tile=24, overlap=4).upscale(image)
        assert list(rt._shapes) == shapes and None not in shapes
        assert len(shapes) >= 1 and all(h <= 24 and w <= 24 for h, w in shapes)
    ckpt = onnx_path.with_suffix(".pth")
    torch.save({"params": desc.model.state_dict()}, ckpt)
    with create_runtime("torch", ckpt) as rt:  # PyTorch FP32 through the same tiles
        ref = Upscaler(rt, tile=24, overlap=4).upscale(image)
    assert np.abs(out - ref).max() <= 1e-4


def test_dynamic_mode_compiles_once(models):
    desc, onnx_path = models["compact_x4"]
    x = np.random.default_rng(5).random((2, 3, 12, 20), np.float32)
    with create_runtime("openvino", onnx_path, static=False, precision="fp32") as rt:
        assert list(rt._shapes) == [None]
        np.testing.assert_allclose(rt.infer(x), reference(desc, x), atol=1e-4)
        rt.infer(x[:, :, :8])
        assert list(rt._shapes) == [None]


def test_fresh_runtime_loads_the_compiled_model_from_the_cache(models, tmp_path, monkeypatch):
    """OpenVINO's model cache: a second runtime (a fresh process's) loads the compiled shape
    instead of compiling it, with the same output; a changed model compiles anew; a truncated
    blob is compiled again; compile_cache=False writes nothing; old blobs are pruned."""
    from edgesr.runtimes import openvino_runtime

    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    folder = openvino_runtime.compiled_cache_dir()
    desc, onnx_path = models["compact_x4"]
    x = np.random.default_rng(6).random((1, 3, 12, 16), np.float32)

    def run(path=onnx_path, **options):
        with create_runtime("openvino", path, precision="fp32", **options) as rt:
            out = rt.infer(x)
            return out, openvino_runtime._loaded_from_cache(rt.compiled)

    first, cached = run()
    blobs = sorted(folder.glob("*.blob"))
    assert not cached and len(blobs) == 1
    second, cached = run()
    assert cached and np.array_equal(first, second)
    np.testing.assert_allclose(second, reference(desc, x), atol=1e-4)
    _, cached = run(models["rrdb_x2"][1])  # another model: its own blob
    assert not cached and len(list(folder.glob("*.blob"))) == 2
    blobs[0].write_bytes(blobs[0].read_bytes()[:100])  # killed while writing
    third, cached = run()
    assert not cached and np.array_equal(first, third)
    for blob in folder.glob("*.blob"):
        blob.unlink()
    run(compile_cache=False)
    assert not list(folder.glob("*.blob"))
    monkeypatch.setattr(openvino_runtime, "COMPILED_KEPT", 1)
    run()
    run(models["rrdb_x2"][1])
    assert len(list(folder.glob("*.blob"))) == 1
