"""The ``diffusion`` INT8 layout's float scope, read off the graphs (tiny SD x4 UNet, tiny SR3
denoiser), which graph gets which layout, and image upscalers refusing the diffusion presets."""

from pathlib import Path

import pytest
from tiny_models import export_tiny_diffusion

from edgesr.errors import EdgesrError
from edgesr.export.diffusion_int8 import float_scope, graph_layout
from edgesr.export.quantize import QuantizeOptions, int8_layout, target_backend

ov = pytest.importorskip("openvino", reason="openvino is not installed")
pytest.importorskip("diffusers", reason="diffusers is not installed: "
                    "pip install 'edgesr[diffusion]'")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return export_tiny_diffusion(tmp_path_factory.mktemp("di8"))


def _convs(model) -> list[str]:
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "Convolution"]


def test_unet_keeps_conditioning_ends_tail_and_attention_products_in_float(models):
    model = ov.Core().read_model(str(models / "sd" / "unet.onnx"))
    kept = set(float_scope(model))
    convs = _convs(model)
    tail = [c for c in convs if "/up_blocks.1/" in c or "/upsamplers.0/" in c and "up_blocks.0"
            in c] + [convs[-1]]
    assert {convs[0], *tail} <= kept  # first conv; the last up block, its upsampler, conv_out
    assert not {c for c in convs if "/down_blocks." in c or "/mid_block/" in c} & kept
    attention = "/unet/mid_block/attentions.0/transformer_blocks.0/attn1/"
    assert {attention + "MatMul", attention + "MatMul_1"} <= kept  # q x k, softmax x v
    assert attention + "to_q/MatMul" not in kept  # on the image path: INT8
    cross = "/unet/mid_block/attentions.0/transformer_blocks.0/attn2/"
    assert {cross + "to_k/MatMul", cross + "to_v/MatMul"} <= kept  # text embeddings only
    assert {"/unet/time_embedding/linear_1/Gemm/WithoutBiases",
            "/unet/mid_block/resnets.0/time_emb_proj/Gemm/WithoutBiases"} <= kept
    types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    assert {types[name] for name in kept} == {"Convolution", "MatMul"}


def test_sr3_denoiser_tail_is_after_its_last_upsampling(models):
    model = ov.Core().read_model(str(models / "sr3.onnx"))
    kept = set(float_scope(model))
    ops = model.get_ordered_ops()
    last_up = max(i for i, op in enumerate(ops) if op.get_type_name() == "Interpolate")
    after = {op.get_friendly_name() for op in ops[last_up:]
             if op.get_type_name() == "Convolution"}
    assert after and after <= kept
    convs = _convs(model)
    assert convs[0] in kept and len(set(convs) - kept) >= len(convs) // 2
    assert any("noise_level_mlp" in name for name in kept)  # the noise-level MLP: float


def test_vae_decoders_take_int8_weights_under_the_diffusion_layout():
    assert graph_layout("diffusion", "vae_decoder.onnx") == "weights"
    assert graph_layout("diffusion", "unet.onnx") == "diffusion"
    assert graph_layout("all-ops", "vae_decoder.onnx") == "all-ops"
    assert graph_layout("diffusion", "sr3.onnx") == "diffusion"


def test_image_upscalers_refuse_the_diffusion_presets():
    for preset in ("diffusion", "weights"):
        with pytest.raises(EdgesrError, match=f"--preset {preset} is a diffusion graph layout"):
            target_backend(QuantizeOptions(precision="int8", preset=preset), Path("x.onnx"))
        with pytest.raises(EdgesrError, match="image upscalers take sr-safe, all-ops"):
            int8_layout(preset)
    assert int8_layout("sr-safe")[0] == ("Conv",)
