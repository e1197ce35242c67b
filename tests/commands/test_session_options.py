"""One home for the options that load a model: edgesr upscale, batch, watch and serve take the
same ones and turn them into the same edgesr.load arguments, which reach the backend."""

import logging

import pytest
import torch
from serve.helpers import png_bytes
from tiny_models import make_tiny

from edgesr.cli import build_parser, main
from edgesr.commands.session_options import session_settings

OPTIONS = ["-b", "openvino", "--precision", "bf16", "--device", "GPU", "--tile", "64",
           "--overlap", "8", "--batch", "2", "--blend", "linear", "--threads", "3"]
POSITIONAL = {"upscale": ["in.png"], "batch": ["in/", "out/", "--ray"],
              "watch": ["in/", "out/"], "serve": []}


@pytest.fixture
def tiny_checkpoint_x2(tmp_path):
    path = tmp_path / "tiny_x2.pth"
    torch.save({"params": make_tiny("compact_x2").state_dict()}, path)
    return path


@pytest.mark.parametrize("command", sorted(POSITIONAL))
def test_each_command_turns_the_options_into_the_same_load_arguments(command):
    args = build_parser().parse_args([command, *POSITIONAL[command], *OPTIONS])
    assert session_settings(args) == {"backend": "openvino", "precision": "bf16",
                                      "device": "GPU", "tile": 64, "overlap": 8, "batch": 2,
                                      "blend": "linear", "threads": 3}
    defaults = build_parser().parse_args([command, *POSITIONAL[command]])
    assert session_settings(defaults) == {"backend": None, "precision": None, "device": None,
                                          "tile": 256, "overlap": 32, "batch": None,
                                          "blend": None}


def test_precision_reaches_the_backend(tmp_path, tiny_checkpoint_x2, capsys, caplog):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "ok.png").write_bytes(png_bytes())
    argv = ["watch", str(inbox), str(tmp_path / "out"), "--once", "--settle", "0", "-m",
            str(tiny_checkpoint_x2), "--backend", "torch", "--tile", "16", "--overlap", "4"]
    assert main([*argv, "--precision", "bf16"]) == 1
    assert "backend 'torch' has no precision option 'bf16'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "ok.png").exists()
    with caplog.at_level(logging.INFO, logger="edgesr.watch"):
        assert main([*argv, "--precision", "fp32"]) == 0
    assert "edgesr: torch on cpu at fp32; model tiny_x2.pth" in caplog.messages
    assert (tmp_path / "out" / "ok.png").is_file()
