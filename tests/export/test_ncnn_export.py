"""ncnn export: parity with PyTorch on every tiny family, round trip through our importer,
the bundled models re-exported, and nothing written when a step fails."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import RESIZED
from tiny_models import make_tiny

from edgesr.cli import main
from edgesr.errors import ExportError, UnsupportedArchitectureError
from edgesr.export import ncnn_export
from edgesr.export.ncnn_export import export_ncnn, ncnn_graph
from edgesr.models import load_model, model_from_state_dict
from edgesr.models.descriptor import OutputResize
from edgesr.models.ncnn_param import parse_param
from edgesr.models.zoo import bundled_model_path

pytest.importorskip("ncnn")


def _forward(descriptor, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return descriptor.model(torch.from_numpy(x)).numpy()


def test_every_family_exports_with_parity_and_round_trips(tiny_name, tiny_checkpoint, tmp_path):
    descriptor = load_model(tiny_checkpoint)
    report = export_ncnn(descriptor, tmp_path / "out" / "model.param")
    assert report.param_path.is_file() and report.bin_path.is_file()
    assert report.max_abs_diff <= 1e-4
    multiple = descriptor.size_multiple
    assert report.parity_shape[2] % multiple == 0 and report.parity_shape[2:] != (24, 24)
    back = load_model(report.param_path)  # our importer reads what we wrote
    assert (back.architecture, back.scale, back.hyperparameters) == (
        descriptor.architecture, descriptor.scale, descriptor.hyperparameters)
    x = np.random.default_rng(0).random((1, 3, 3 * multiple, 5 * multiple), np.float32)
    np.testing.assert_array_equal(_forward(back, x), _forward(descriptor, x))


@pytest.mark.parametrize("name", sorted(RESIZED))
def test_an_output_resize_becomes_a_bicubic_interp(name, tmp_path):
    base = model_from_state_dict(make_tiny("compact_x4").state_dict())
    factor = RESIZED[name]
    descriptor = replace(base, model=OutputResize(base.model, factor).eval(),
                         scale=int(4 * factor))
    report = export_ncnn(descriptor, tmp_path / f"{name}.param")
    last = parse_param(report.param_path)[-1]
    assert last.type == "Interp" and last.params[0] == 3 and last.params[1] == factor
    assert report.max_abs_diff <= 1e-4
    assert load_model(report.param_path).scale == descriptor.scale


def test_bundled_models_re_export_to_the_same_network(tmp_path):
    """An official ncnn model, imported and exported again, computes what it did."""
    source = bundled_model_path("realesr-animevideov3-x3")
    report = export_ncnn(load_model(source), tmp_path / "again.param")
    x = np.random.default_rng(1).random((1, 3, 10, 14), np.float32)
    np.testing.assert_allclose(_forward(load_model(report.param_path), x),
                               _forward(load_model(source), x), atol=1e-6)


def test_blobs_read_twice_go_through_a_split(tmp_path):
    text, _ = ncnn_graph(model_from_state_dict(make_tiny("rrdb_x4").state_dict()))
    lines = [line.split() for line in text.splitlines()[2:]]
    reads = [blob for tokens in lines for blob in tokens[4:4 + int(tokens[2])]]
    assert len(reads) == len(set(reads))  # every blob has one reader
    assert any(tokens[0] == "Split" for tokens in lines)


def test_failed_parity_writes_nothing(tmp_path, monkeypatch):
    descriptor = model_from_state_dict(make_tiny("compact_x2").state_dict())
    real = ncnn_export.ncnn_graph

    def corrupted(desc):
        text, weights = real(desc)
        return text, weights[:-4] + np.float32(5.0).tobytes()  # the last bias is wrong

    monkeypatch.setattr(ncnn_export, "ncnn_graph", corrupted)
    target = tmp_path / "model.param"
    with pytest.raises(ExportError, match="ncnn parity check failed"):
        export_ncnn(descriptor, target)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_architecture_and_suffix(tmp_path):
    from edgesr.models.descriptor import ModelDescriptor

    odd = ModelDescriptor(model=torch.nn.Identity(), architecture="SwinIR", scale=1,
                          in_channels=3, out_channels=3)
    with pytest.raises(UnsupportedArchitectureError, match="no ncnn writer for SwinIR"):
        export_ncnn(odd, tmp_path / "m.param")
    tiny = model_from_state_dict(make_tiny("compact_x2").state_dict())
    with pytest.raises(ExportError, match="written to a .param file"):
        export_ncnn(tiny, tmp_path / "m.ncnn")


def test_cli_export_chooses_ncnn_by_suffix(tmp_path, capsys):
    checkpoint = tmp_path / "tiny.pth"
    torch.save({"params_ema": make_tiny("rrdb_x2").state_dict()}, checkpoint)
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "tiny.param")]) == 0
    out = capsys.readouterr().out
    assert "(ncnn)" in out and "parity vs PyTorch (input 1x3x" in out
    assert (tmp_path / "tiny.bin").is_file()
    assert load_model(tmp_path / "tiny.param").scale == 2


@pytest.mark.parametrize("act_type", ["relu", "leakyrelu"])
def test_compact_with_other_activations_exports_with_parity(act_type, tmp_path):
    from edgesr.models.compact import SRVGGNetCompact
    from edgesr.models.descriptor import ModelDescriptor

    torch.manual_seed(0)
    model = SRVGGNetCompact(3, 3, num_feat=8, num_conv=2, upscale=2, act_type=act_type).eval()
    descriptor = ModelDescriptor(model=model, architecture="SRVGGNetCompact", scale=2,
                                 in_channels=3, out_channels=3)
    report = export_ncnn(descriptor, tmp_path / "m.param")
    assert report.max_abs_diff <= 1e-4
    relus = [layer for layer in parse_param(report.param_path) if layer.type == "ReLU"]
    assert len(relus) == 3 and all(layer.params.get(0, 0.0) == (0.1 if act_type == "leakyrelu"
                                                               else 0.0) for layer in relus)
