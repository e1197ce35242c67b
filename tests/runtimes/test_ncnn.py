"""The ncnn backend: parity with the torch path on bundled and tiny models, its options, errors.

The runtime protocol itself is checked by tests/runtimes/test_protocol.py."""

import numpy as np
import pytest
import torch
from tiny_models import make_tiny

from edgesr.errors import BackendUnavailableError, CheckpointError, EdgesrError
from edgesr.export.ncnn_export import export_ncnn
from edgesr.models import load_model, model_from_state_dict
from edgesr.models.zoo import BUNDLED_MODELS, bundled_model_path
from edgesr.pipeline import open_runtime
from edgesr.runtimes import create_runtime

pytest.importorskip("ncnn")


def _torch_and_ncnn(model, batch: np.ndarray, **options) -> tuple[np.ndarray, np.ndarray]:
    with create_runtime("torch", model) as reference:
        expected = reference.infer(batch)
    with create_runtime("ncnn", model, **options) as runtime:
        return runtime.infer(batch), expected


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_bundled_models_match_the_torch_path(name, rng):
    batch = rng.random((2, 3, 12, 10), np.float32)  # a batch of two small tiles
    got, expected = _torch_and_ncnn(bundled_model_path(name), batch)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_tiny_models_match_the_torch_path(tiny_name, tiny_checkpoint, tmp_path, rng):
    param = tmp_path / f"{tiny_name}.param"
    export_ncnn(load_model(tiny_checkpoint), param)
    descriptor = load_model(tiny_checkpoint)
    batch = rng.random((2, 3, 8, 12), np.float32)
    with create_runtime("ncnn", param) as runtime:
        info = runtime.info
        assert (info.scale, info.in_channels, info.out_channels) == (descriptor.scale, 3, 3)
        assert info.size_multiple == descriptor.size_multiple and info.dynamic
        assert (info.precision, info.device) == ("fp32", "cpu")
        got = runtime.infer(batch)
    with torch.no_grad():
        expected = descriptor.model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_a_checkpoint_is_exported_to_ncnn_once(tmp_path, rng):
    checkpoint = tmp_path / "tiny.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, checkpoint)
    batch = rng.random((1, 3, 7, 9), np.float32)
    with open_runtime(str(checkpoint), "torch") as reference:
        expected = reference.infer(batch)
    with open_runtime(str(checkpoint), "ncnn") as runtime:
        param = runtime.model_path
        np.testing.assert_allclose(runtime.infer(batch), expected, atol=1e-4)
    assert param.suffix == ".param" and param.with_suffix(".bin").is_file()
    before = param.stat().st_mtime_ns
    with open_runtime(str(checkpoint), "ncnn") as again:
        assert again.model_path == param
    assert param.stat().st_mtime_ns == before  # the cached export is reused
    with pytest.raises(CheckpointError, match="runs ncnn .param/.bin files"):
        create_runtime("ncnn", checkpoint).activate()


def test_fp16_reports_the_precision_that_ran(rng):
    """fp16 storage/arithmetic are ncnn flags; whether they changed anything is measured: where
    the output equals the fp32 net's, the report says fp32."""
    param = bundled_model_path("realesr-animevideov3-x2")
    batch = rng.random((1, 3, 9, 11), np.float32)
    with create_runtime("ncnn", param) as fp32:
        exact = fp32.infer(batch)
    with create_runtime("ncnn", param, precision="fp16") as fp16:
        half = fp16.infer(batch)
        ran = fp16.info.precision
        assert ran in ("fp16", "fp32")
        if ran == "fp32":
            np.testing.assert_array_equal(half, exact)
            assert "fp16 asked" in fp16.info.precision_note and "at fp32" in fp16.describe()
        else:
            assert not np.array_equal(half, exact)
            np.testing.assert_allclose(half, exact, atol=5e-2)


def test_precision_and_threads_through_open_runtime(rng):
    param = bundled_model_path("realesr-animevideov3-x2")
    with open_runtime(str(param), "ncnn:fp32", threads=1) as runtime:
        assert runtime.config.threads == 1 and runtime.info.precision == "fp32"
        assert runtime.infer(rng.random((1, 3, 5, 6), np.float32)).shape == (1, 3, 10, 12)
    with pytest.raises(EdgesrError, match="no precision option 'int8'"):
        open_runtime(str(param), "ncnn:int8")


@pytest.mark.parametrize("options, match", [
    (dict(device="metal"), "unknown device 'metal'"),
    (dict(precision="bf16"), "precision must be one of fp32, fp16"),
    (dict(threads=-1), "threads and gpu must be >= 0"),
])
def test_bad_options(options, match):
    with pytest.raises(EdgesrError, match=match):
        create_runtime("ncnn", bundled_model_path("realesr-animevideov3-x2"), **options)


def test_vulkan_without_a_gpu_is_one_clear_error():
    import ncnn

    if ncnn.get_gpu_count() > 0:
        pytest.skip("this machine has a Vulkan GPU")
    runtime = create_runtime("ncnn", bundled_model_path("realesr-animevideov3-x2"),
                             device="vulkan")
    with pytest.raises(BackendUnavailableError, match="no Vulkan GPU 0"):
        runtime.activate()


def test_missing_bin_and_bad_param(tmp_path):
    param = tmp_path / "model.param"
    param.write_text(bundled_model_path("realesr-animevideov3-x2").read_text())
    with pytest.raises(CheckpointError, match="ncnn .bin not found"):
        create_runtime("ncnn", param).activate()
    source = bundled_model_path("realesr-animevideov3-x2").with_suffix(".bin").read_bytes()
    param.with_suffix(".bin").write_bytes(source[:-8])  # ncnn itself would run on garbage
    with pytest.raises(CheckpointError, match="does not match its .param"):
        create_runtime("ncnn", param).activate()
    param.write_text("not a param\n")
    with pytest.raises(CheckpointError, match="not an ncnn text .param"):
        create_runtime("ncnn", param).activate()


def test_size_multiple_is_enforced(rng, tmp_path):
    param = tmp_path / "x1.param"
    export_ncnn(model_from_state_dict(make_tiny("rrdb_x1").state_dict()), param)
    with create_runtime("ncnn", param) as runtime:
        assert runtime.info.size_multiple == 4
        with pytest.raises(EdgesrError, match="not divisible by the model's size multiple 4"):
            runtime.infer(rng.random((1, 3, 6, 8), np.float32))


def test_cli_upscale_with_a_bundled_model_on_ncnn(tmp_path, rng):
    from PIL import Image

    from edgesr.cli import main

    source = tmp_path / "in.png"
    Image.fromarray((rng.random((10, 12, 3)) * 255).astype(np.uint8)).save(source)
    target = tmp_path / "out.png"
    assert main(["upscale", str(source), "-o", str(target), "-m", "realesr-animevideov3-x2",
                 "-b", "ncnn", "-q"]) == 0
    reference = tmp_path / "ref.png"
    assert main(["upscale", str(source), "-o", str(reference), "-m", "realesr-animevideov3-x2",
                 "-q"]) == 0
    got, want = (np.asarray(Image.open(p), np.int16) for p in (target, reference))
    assert got.shape == (20, 24, 3) and np.abs(got - want).max() <= 1
