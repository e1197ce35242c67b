"""Architecture detection from state_dicts the tests write, in every supported file form."""

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import TINY_SCALES, make_tiny

from edgesr.errors import CheckpointError, UnsupportedArchitectureError
from edgesr.models import load_model, model_from_state_dict


def test_detects_family_scale_and_depth(tiny_name):
    model = make_tiny(tiny_name)
    desc = model_from_state_dict(model.state_dict())
    assert desc.architecture == type(model).__name__
    assert desc.scale == TINY_SCALES[tiny_name]
    assert (desc.in_channels, desc.out_channels) == (3, 3)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(desc.model(x), model(x))


def test_rrdb_hyperparameters_read_off_shapes():
    desc = model_from_state_dict(make_tiny("rrdb_x4").state_dict())
    assert desc.hyperparameters["num_block"] == 2
    assert desc.hyperparameters["num_feat"] == 16
    assert desc.hyperparameters["num_grow_ch"] == 8
    assert model_from_state_dict(make_tiny("rrdb_x1").state_dict()).size_multiple == 4


@pytest.mark.parametrize("wrapper", ["params_ema", "params", None])
def test_pth_wrappers(tmp_path, wrapper):
    sd = make_tiny("compact_x4").state_dict()
    path = tmp_path / "m.pth"
    torch.save({wrapper: sd} if wrapper else sd, path)
    desc = load_model(path)
    assert desc.architecture == "SRVGGNetCompact" and desc.scale == 4
    assert desc.source_sha256 and len(desc.source_sha256) == 64


def test_safetensors(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(make_tiny("rrdb_x2").state_dict(), str(path))
    assert load_model(path).scale == 2


def test_old_esrgan_keys(tmp_path):
    model = make_tiny("rrdb_x4")
    new = model.state_dict()
    old = {}
    for k, v in new.items():
        k = (k.replace("conv_first", "model.0").replace("conv_body", "model.1.sub.2")
             .replace("conv_up1", "model.3").replace("conv_up2", "model.6")
             .replace("conv_hr", "model.8").replace("conv_last", "model.10"))
        if k.startswith("body."):
            _, blk, rdb, conv, param = k.split(".")
            k = f"model.1.sub.{blk}.RDB{rdb[-1]}.{conv}.0.{param}"
        old[k] = v
    desc = model_from_state_dict(old)
    x = torch.rand(1, 3, 6, 6)
    torch.testing.assert_close(desc.model(x), model(x))


def test_unknown_architecture():
    with pytest.raises(UnsupportedArchitectureError, match="unknown architecture"):
        model_from_state_dict({"foo.weight": torch.zeros(3, 3)})


def test_corrupt_and_missing_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_model(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pth")
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError):
        load_model(bad_st)


def test_mismatched_shapes_give_clear_error():
    sd = make_tiny("rrdb_x4").state_dict()
    sd["conv_hr.weight"] = torch.zeros(16, 16, 5, 5)
    with pytest.raises(UnsupportedArchitectureError, match="does not fit"):
        model_from_state_dict(sd)
