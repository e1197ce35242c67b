"""PyTorch eager sessions: an exported SR3 denoiser opened as the checkpoint module its export
recorded gives ONNX Runtime's outputs, and a source that is gone or changed is one line."""

import numpy as np
import pytest
import torch
from tiny_models import make_tiny_denoiser

from edgesr.cli import main
from edgesr.diffusion.sessions import onnxruntime_sessions
from edgesr.diffusion.torch_sessions import TorchSession, TorchSessionOptions
from edgesr.errors import CheckpointError, EdgesrError

#: Measured max abs diff 1.4e-6 (float32, one denoiser call, vs ONNX Runtime); bound with margin.
ATOL = 1e-4


@pytest.fixture
def exported(tmp_path):
    """(checkpoint, its edgesr export)."""
    checkpoint = tmp_path / "sr3_gen.pth"
    torch.save(make_tiny_denoiser("sr3").state_dict(), checkpoint)
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "sr3.onnx")]) == 0
    return checkpoint, tmp_path / "sr3.onnx"


def _feed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((1, 6, 8, 8)).astype(np.float32),
            "noise_level": np.full((1,), 0.7, np.float32)}


def test_runs_the_recorded_module_as_onnx_runtime_runs_the_graph(exported):
    _, graph = exported
    session = TorchSessionOptions().sessions("sr3-torch")(graph)
    assert session.precision == "fp32" and session.metadata()["edgesr.role"] == "denoiser"
    (out,) = session.run(_feed())
    (ref,) = onnxruntime_sessions("sr3", device="cpu")(graph).run(_feed())
    assert out.shape == ref.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)
    with pytest.raises(EdgesrError, match="no input noise_level given"):
        session.run({"x": _feed()["x"]})


def test_a_changed_or_missing_source_is_one_line(exported):
    checkpoint, graph = exported
    torch.save(make_tiny_denoiser("sr3").state_dict() | {"extra": torch.zeros(1)}, checkpoint)
    with pytest.raises(CheckpointError, match="is not the one it was exported from"):
        TorchSession(graph)
    checkpoint.unlink()
    with pytest.raises(CheckpointError, match=r"its PyTorch source .* is not there"):
        TorchSession(graph)
    assert TorchSessionOptions(threads=2).where == "cpu"
    with pytest.raises(EdgesrError, match="need threads >= 0"):
        TorchSessionOptions(threads=-1).check_engine("sr3-torch")


def test_one_factory_loads_a_diffusers_folder_once_for_its_unet_and_vae(tmp_path, monkeypatch):
    pytest.importorskip("diffusers", reason="diffusers is not installed: "
                        "pip install 'edgesr[diffusion]'")
    from tiny_models import export_tiny_diffusion

    from edgesr.export import sd_upscaler

    sd = export_tiny_diffusion(tmp_path) / "sd"
    loads = []
    real = sd_upscaler.load_sd_upscaler
    monkeypatch.setattr(sd_upscaler, "load_sd_upscaler",
                        lambda folder: loads.append(folder) or real(folder))
    factory = TorchSessionOptions().sessions("sd-upscaler-torch")
    unet, vae = factory(sd / "unet.onnx"), factory(sd / "vae_decoder.onnx")
    assert len(loads) == 1
    assert unet.spec.file == "unet.onnx" and vae.spec.file == "vae_decoder.onnx"
    TorchSessionOptions().sessions("sd-upscaler-torch")(sd / "unet.onnx")
    assert len(loads) == 2  # another factory (another runtime) loads its own
