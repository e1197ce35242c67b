"""Model files that are damaged, hostile or not files at all: one CheckpointError line each."""

import os
import pickle

import pytest
import torch
from tiny_models import make_tiny

from edgesr.errors import CheckpointError
from edgesr.models.loading import load_model, load_state_dict


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save(make_tiny("compact_x2").state_dict(), path)
    return path


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_truncated_checkpoint(tmp_path, saved, fraction):
    data = saved.read_bytes()
    bad = tmp_path / "cut.pth"
    bad.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="cut.pth: not a readable PyTorch checkpoint"):
        load_state_dict(bad)


def test_pickled_code_is_refused_without_advice_to_unpickle_it(tmp_path):
    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"a": os.system}, protocol=2))
    with pytest.raises(CheckpointError) as info:
        load_state_dict(bad)
    message = str(info.value)
    assert "evil.pth" in message and "weights_only" not in message
    assert "arbitrary code" not in message and "Python objects" in message


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.mkdir(), "not a regular file"),
    (lambda p: os.mkfifo(p), "not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
    (lambda p: None, "not found"),
])
def test_what_is_not_a_checkpoint_file(tmp_path, make, reason):
    path = tmp_path / "m.pth"
    make(path)
    with pytest.raises(CheckpointError, match=f"m.pth: (checkpoint )?{reason}"):
        load_state_dict(path)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.complex64, torch.uint8])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_that_are_not_floating_point_are_refused(tmp_path, dtype, suffix):
    state = {k: v.to(dtype) for k, v in make_tiny("compact_x2").state_dict().items()}
    path = tmp_path / f"m{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        if dtype == torch.complex64:
            pytest.skip("safetensors stores no complex tensors")
        from safetensors.torch import save_file

        save_file(state, str(path))
    with pytest.raises(CheckpointError, match=rf"m{suffix}: .*stored as {str(dtype)[6:]}"):
        load_model(path)


@pytest.mark.parametrize("data", [b"\x80\x02h\x1c.", b"\x80\x02]q\x00(K\x01e0h\x05."],
                         ids=["memo-key", "memo-after-pop"])
def test_malformed_pickle_is_one_error(tmp_path, data):
    """torch's weights-only unpickler raises KeyError and others on a damaged pickle."""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(data)
    with pytest.raises(CheckpointError, match="bad.pth: not a readable PyTorch checkpoint"):
        load_state_dict(bad)
