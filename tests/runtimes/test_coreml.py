"""CoreML: FP16 / INT8 packages converted from a tiny model, validated by their spec on any OS;
prediction parity only on macOS (skipped elsewhere with the reason)."""

import numpy as np
import pytest
import torch
from tiny_models import make_tiny

pytest.importorskip("coremltools", reason="coremltools is not installed (pip install "
                    "edgesr[coreml])")

from edgesr.errors import BackendUnavailableError, EdgesrError  # noqa: E402
from edgesr.fidelity import psnr  # noqa: E402
from edgesr.models import model_from_state_dict  # noqa: E402
from edgesr.runtimes.coreml_convert import CoreMLError, convert, read_spec  # noqa: E402
from edgesr.runtimes.coreml_runtime import (  # noqa: E402
    CoreMLConfig,
    CoreMLRuntime,
    unavailable_reason,
)
from edgesr.runtimes.engine_cache import ShapeProfile  # noqa: E402

FLEXIBLE = ShapeProfile(min_hw=(16, 16), opt_hw=(32, 32), max_hw=(128, 96))


@pytest.fixture(scope="module")
def descriptor():
    return model_from_state_dict(make_tiny("rrdb_x2").state_dict())


@pytest.fixture(scope="module")
def packages(descriptor, tmp_path_factory):
    """precision -> package: fp16 with flexible shapes, int8 with one fixed tile."""
    folder = tmp_path_factory.mktemp("coreml")
    return {
        "fp16": convert(descriptor, folder / "fp16.mlpackage", precision="fp16",
                        profile=FLEXIBLE),
        "int8": convert(descriptor, folder / "int8.mlpackage", precision="int8",
                        profile=ShapeProfile.fixed(64)),
    }


def test_fp16_package_spec(packages):
    spec = read_spec(packages["fp16"])
    assert (spec.input_name, spec.output_name) == ("input", "output")
    assert spec.input_ranges == ((1, 1), (3, 3), (16, 128), (16, 96))
    assert spec.default_shape == (1, 3, 32, 32)
    assert (spec.input_dtype, spec.output_dtype) == ("float32", "float32")
    assert spec.compute_precision == "fp16" and spec.quantized_weight_ops == 0
    assert spec.metadata["scale"] == "2" and spec.metadata["size_multiple"] == "2"
    assert spec.metadata["precision"] == "fp16"


def test_int8_package_spec(packages):
    spec = read_spec(packages["int8"])
    assert spec.input_ranges == ((1, 1), (3, 3), (64, 64), (64, 64))
    assert spec.compute_precision == "fp16"
    assert spec.quantized_weight_ops >= 9  # every conv weight of the tiny RRDB
    assert spec.metadata["precision"] == "int8"
    weights = sum(f.stat().st_size for f in packages["int8"].rglob("weight.bin"))
    fp16_weights = sum(f.stat().st_size for f in packages["fp16"].rglob("weight.bin"))
    assert weights < 0.7 * fp16_weights


def test_conversion_errors(descriptor, tmp_path):
    with pytest.raises(CoreMLError, match="precision"):
        convert(descriptor, tmp_path / "x.mlpackage", precision="int4")
    with pytest.raises(CoreMLError, match="divisible by 2"):
        convert(descriptor, tmp_path / "x.mlpackage", profile=ShapeProfile.fixed(33))
    with pytest.raises(CoreMLError, match="not a readable"):
        read_spec(tmp_path / "missing.mlpackage")
    with pytest.raises(EdgesrError, match="compute_units"):
        CoreMLConfig(compute_units="tpu")


@pytest.mark.skipif(unavailable_reason() is None, reason="runs where CoreML cannot predict")
def test_runtime_says_why_it_is_unavailable(packages):
    with pytest.raises(BackendUnavailableError, match="needs macOS"):
        CoreMLRuntime(packages["fp16"]).activate()


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
@pytest.mark.parametrize("precision,min_psnr", [("fp16", 45.0), ("int8", 30.0)])
def test_predict_parity_on_macos(packages, descriptor, precision, min_psnr):
    x = np.random.default_rng(0).random((2, 3, 64, 64), np.float32)
    with CoreMLRuntime(packages[precision], CoreMLConfig(compute_units="cpu")) as rt:
        assert rt.info.precision == precision  # recorded in the package's metadata
        out = rt.infer(x)
    with torch.no_grad():
        ref = descriptor.model(torch.from_numpy(x)).numpy()
    assert psnr(out, ref) > min_psnr
