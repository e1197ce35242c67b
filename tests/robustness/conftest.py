"""The robustness suite: seeded faults (bad images, corrupt or hostile model and engine files,
kill -9, concurrent callers), small counts by default, the issue's counts with
``EDGESR_FULL_ROBUSTNESS=1``. Each test prints a one-line tally (``pytest -s`` shows it)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.append(str(Path(__file__).parent))  # after tests/: its conftest stays "conftest"

from tiny_models import make_tiny  # noqa: E402


@pytest.fixture(scope="package")
def tiny_x2(tmp_path_factory) -> Path:
    """A tiny compact x2 checkpoint."""
    path = tmp_path_factory.mktemp("robust") / "compact_x2.pth"
    torch.save(make_tiny("compact_x2").state_dict(), path)
    return path
