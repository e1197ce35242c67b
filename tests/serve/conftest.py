"""Fixtures of the service tests: a tiny x2 checkpoint and a session on it."""

import pytest
import torch
from tiny_models import make_tiny

import edgesr


@pytest.fixture(scope="session")
def tiny_checkpoint_x2(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve-model") / "tiny_x2.pth"
    torch.save({"params": make_tiny("compact_x2").state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def session(tiny_checkpoint_x2):
    with edgesr.load(tiny_checkpoint_x2, backend="torch", tile=16, overlap=4) as sr:
        yield sr
