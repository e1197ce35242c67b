"""The ncnn importer: parity with the ncnn runtime on every bundled model, weight tags, errors."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import make_tiny

from edgesr.errors import CheckpointError, UnsupportedArchitectureError
from edgesr.models import load_model
from edgesr.models.compact import SRVGGNetCompact
from edgesr.models.ncnn import load_ncnn_model
from edgesr.models.ncnn_param import TAG_FP16, TAG_INT8
from edgesr.models.zoo import BUNDLED_MODELS, bundled_model_path

ncnn = pytest.importorskip("ncnn")

EXPECTED = {
    "realesrgan-x4plus": ("RRDBNet", 4, 23),
    "realesrgan-x4plus-anime": ("RRDBNet", 4, 6),
    "realesr-animevideov3-x2": ("SRVGGNetCompact", 2, 16),
    "realesr-animevideov3-x3": ("SRVGGNetCompact", 3, 16),
    "realesr-animevideov3-x4": ("SRVGGNetCompact", 4, 16),
}


def run_ncnn(param: Path, x: np.ndarray, bin_path: Path | None = None) -> np.ndarray:
    """Run a CHW float32 image through the ncnn runtime on the CPU in fp32."""
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    assert net.load_param(str(param)) == 0
    assert net.load_model(str(bin_path or param.with_suffix(".bin"))) == 0
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(np.ascontiguousarray(x)))
    ret, out = ex.extract("output")
    assert ret == 0
    return np.array(out)


def run_torch(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_bundled_model_matches_ncnn(name):
    param = bundled_model_path(name)
    desc = load_ncnn_model(param)
    arch, scale, depth = EXPECTED[name]
    assert (desc.architecture, desc.scale) == (arch, scale)
    assert depth in (desc.hyperparameters.get("num_block"), desc.hyperparameters.get("num_conv"))
    x = np.random.default_rng(0).random((3, 20, 24), dtype=np.float32)
    want = run_ncnn(param, x)
    got = run_torch(desc.model, x)
    assert got.shape == want.shape == (3, 20 * scale, 24 * scale)
    assert np.abs(got - want).max() <= 1e-4


def test_source_hash_covers_param_and_bin():
    param = bundled_model_path("realesr-animevideov3-x4")
    desc = load_model(param)  # the generic loader dispatches .param files here
    digest = hashlib.sha256(param.read_bytes() + param.with_suffix(".bin").read_bytes())
    assert desc.source == str(param)
    assert desc.source_sha256 == digest.hexdigest()


def write_compact_ncnn(model: SRVGGNetCompact, stem: Path, tag: int) -> Path:
    """Write ``model`` as an ncnn .param/.bin pair laid out like realesr-animevideov3,
    convolution weights behind ``tag`` (float32 for 0, float16 for TAG_FP16)."""
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    n_layers = len(model.body)
    lines = ["Input in 0 1 data", "Split split 1 2 data data_0 data_1"]
    weights = bytearray()
    blob = "data_0"
    for i in range(n_layers):
        w = sd[f"body.{i}.weight"]
        if w.ndim == 4:
            lines.append(f"Convolution conv{i} 1 1 {blob} b{i} 0={w.shape[0]} 1=3 4=1 5=1 "
                         f"6={w.size}")
            data = w.astype("<f2" if tag == TAG_FP16 else "<f4").tobytes()
            weights += tag.to_bytes(4, "little") + data + bytes(-len(data) % 4)
            weights += sd[f"body.{i}.bias"].astype("<f4").tobytes()
        else:
            lines.append(f"PReLU prelu{i} 1 1 {blob} b{i} 0={w.size}")
            weights += w.astype("<f4").tobytes()
        blob = f"b{i}"
    r = model.upscale
    lines += [f"PixelShuffle shuffle 1 1 {blob} shuffled 0={r}",
              f"Interp up 1 1 data_1 up 0=1 1={r}.0 2={r}.0",
              "BinaryOp add 2 1 shuffled up output"]
    param = stem.with_suffix(".param")
    param.write_text(f"7767517\n{len(lines)} {n_layers + 6}\n" + "\n".join(lines) + "\n")
    stem.with_suffix(".bin").write_bytes(bytes(weights))
    return param


def odd_compact() -> SRVGGNetCompact:
    """A compact net whose first conv has an odd weight count (135), so fp16 needs padding."""
    torch.manual_seed(0)
    return SRVGGNetCompact(3, 3, num_feat=5, num_conv=1, upscale=2).eval()


@pytest.mark.parametrize("tag", [0, 0x0002C056, TAG_FP16], ids=["fp32", "fp32-scaled", "fp16"])
@pytest.mark.parametrize("make", [odd_compact, lambda: make_tiny("compact_x2")],
                         ids=["odd", "tiny"])
def test_synthetic_weight_tags(tmp_path, tag, make):
    model = make()
    param = write_compact_ncnn(model, tmp_path / "m", tag)
    desc = load_ncnn_model(param)
    for key, value in model.state_dict().items():
        if tag == TAG_FP16 and key.endswith("weight") and value.ndim == 4:
            value = value.half().float()
        torch.testing.assert_close(desc.model.state_dict()[key], value, rtol=0, atol=0)
    x = np.random.default_rng(1).random((3, 9, 7), dtype=np.float32)
    assert np.abs(run_torch(desc.model, x) - run_ncnn(param, x)).max() <= 1e-5


@pytest.fixture
def compact_copy(tmp_path) -> Path:
    """A writable copy of realesr-animevideov3-x4 (.param and .bin)."""
    src = bundled_model_path("realesr-animevideov3-x4")
    for suffix in (".param", ".bin"):
        shutil.copy(src.with_suffix(suffix), tmp_path / f"m{suffix}")
    return tmp_path / "m.param"


def edit_param(param: Path, old: str, new: str) -> None:
    text = param.read_text()
    assert old in text
    param.write_text(text.replace(old, new, 1))


def test_wrong_magic(compact_copy):
    edit_param(compact_copy, "7767517", "7767518")
    with pytest.raises(CheckpointError, match=r"m\.param: not an ncnn text \.param"):
        load_ncnn_model(compact_copy)


def test_truncated_param(compact_copy):
    lines = compact_copy.read_text().splitlines()
    compact_copy.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(CheckpointError, match="declares 40 layers but has 37"):
        load_ncnn_model(compact_copy)


def test_malformed_parameter(compact_copy):
    edit_param(compact_copy, "0=64 1=3 4=1 5=1 6=1728", "0=abc 1=3 4=1 5=1 6=1728")
    with pytest.raises(CheckpointError, match="'Convolution Conv_0' has a malformed parameter"):
        load_ncnn_model(compact_copy)


def test_missing_bin(compact_copy):
    compact_copy.with_suffix(".bin").unlink()
    with pytest.raises(CheckpointError, match=r"m\.bin: ncnn \.bin not found"):
        load_ncnn_model(compact_copy)


def test_explicit_bin_path(compact_copy, tmp_path):
    other = compact_copy.with_suffix(".bin").rename(tmp_path / "weights.dat")
    assert load_ncnn_model(compact_copy, other).scale == 4


@pytest.mark.parametrize("cut, match", [(-10, "truncated"), (10, "10 bytes left over")])
def test_bin_size_mismatch(compact_copy, cut, match):
    bin_path = compact_copy.with_suffix(".bin")
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[:cut] if cut < 0 else data + bytes(cut))
    with pytest.raises(CheckpointError, match=match):
        load_ncnn_model(compact_copy)


def test_int8_weights_refused(compact_copy):
    bin_path = compact_copy.with_suffix(".bin")
    data = bin_path.read_bytes()
    bin_path.write_bytes(TAG_INT8.to_bytes(4, "little") + data[4:])
    with pytest.raises(CheckpointError, match="layer 'Conv_0' weight holds int8"):
        load_ncnn_model(compact_copy)


@pytest.mark.parametrize("old, new, match", [
    ("PReLU ", "ReLU ", "layer .PRelu_1. has unsupported type .ReLU."),
    ("1 1 57 59 0=64", "1 1 54 59 0=64", "'PRelu_3' .* does not fit the SRVGGNetCompact"),
    ("0=64 1=3 4=1 5=1 6=1728", "0=64 1=3 4=0 5=1 6=1728", "4=0, only 4=1"),
])
def test_unsupported_graphs(compact_copy, old, new, match):
    edit_param(compact_copy, old, new)
    with pytest.raises(UnsupportedArchitectureError, match=match):
        load_ncnn_model(compact_copy)
