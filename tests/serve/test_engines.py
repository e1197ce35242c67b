"""Named models for edgesr serve: --model [NAME=]MODEL, names unique, the first the default."""

import io

import httpx
import pytest
import torch
from PIL import Image
from serve.helpers import LiveServer, png_bytes
from tiny_models import make_tiny

from edgesr.errors import EdgesrError
from edgesr.serve.app import create_app
from edgesr.serve.config import ServeConfig
from edgesr.serve.engines import close_engines, engine_specs, load_engines, parse_model


def test_parse_model_names():
    assert parse_model("small=/m/tiny.onnx") == ("small", "/m/tiny.onnx")
    assert parse_model("/m/tiny.onnx") == ("tiny", "/m/tiny.onnx")
    assert parse_model("realesrgan-x4plus") == ("realesrgan-x4plus", "realesrgan-x4plus")
    assert [s.name for s in engine_specs(None)] == ["realesrgan-x4plus"]
    with pytest.raises(EdgesrError, match="two models are named 'tiny'"):
        engine_specs(["a/tiny.onnx", "b/tiny.onnx"])
    with pytest.raises(EdgesrError, match="expected NAME=MODEL"):
        parse_model("=x.onnx")


def test_two_models_chosen_by_the_model_field(tmp_path):
    paths = {}
    for name in ("compact_x2", "compact_x4"):
        paths[name] = tmp_path / f"{name}.pth"
        torch.save({"params": make_tiny(name).state_dict()}, paths[name])
    specs = engine_specs([f"two={paths['compact_x2']}", f"four={paths['compact_x4']}"],
                         backend="torch", tile=16, overlap=4)
    engines = load_engines(specs)
    try:
        app = create_app(ServeConfig(work_dir=tmp_path / "work"), engines)
        with LiveServer(app) as live:
            default = httpx.post(f"{live.url}/v1/upscale", content=png_bytes(), timeout=60)
            four = httpx.post(f"{live.url}/v1/upscale", params={"model": "four"},
                              content=png_bytes(), timeout=60)
            listed = httpx.get(f"{live.url}/v1/models", timeout=60).json()
    finally:
        close_engines(engines)
    assert Image.open(io.BytesIO(default.content)).size == (56, 40)
    assert Image.open(io.BytesIO(four.content)).size == (112, 80)
    assert listed["two"]["default"] and listed["four"]["scale"] == 4
