"""OpenVINO INT8 layouts of diffusion graphs (UNets, VAE decoders, SR3 denoisers): each builds,
from a graph's FP32 ``.onnx`` and its recorded sampler feeds (``FeedSet``), an IR that the
OpenVINO sessions compile instead of converting the ``.onnx``.

``LAYOUTS`` (``edgesr quantize --preset``):

- ``weights`` (also ``sr-safe``): INT8 weights (NNCF ``compress_weights``), float activations.
- ``all-ops``: ``nncf.quantize`` of every op NNCF quantizes (transformer model type: SmoothQuant
  and fast bias correction), calibrated on the recorded feeds.
- ``diffusion`` (the default): in the UNet (SR3: the denoiser), run at every step, weights and
  activations of the ops on the image path in INT8,
  calibrated the same way, with what costs quality and little time kept in float
  (``float_scope``): every op fed only by the conditioning (timestep, class and text embeddings:
  the time MLPs, the cross-attention keys and values), the first convolution, the
  full-resolution tail (every convolution after the last upsampling: the last up block and the
  output convolution), and the attention products (query x key, softmax x value); activation
  ranges are the mean over
  the feeds of their quantiles, not their extremes. A VAE decoder, run once per image, gets
  INT8 weights only (``DECODER_LAYOUTS``).

Measured on the SD x4 UNet at its real size (random weights; 3 steps, 64² images, calibrated on
two sampled images; final image PSNR vs the FP32 sampler, same seed, the UNet IR at the BF16
hint, the VAE decoder in BF16; measured under load, for quality only): BF16 alone 43.7 dB;
``all-ops`` 35.6 dB; the float scope without the tail and with min-max ranges 36.7 dB (with
every MatMul in float too: 36.7 dB, so convolutions cost most of it); with quantile ranges
38.4 dB; ``diffusion`` 41.8 dB (41.1 dB on a synthetic photo); at 10 steps, calibrated on
10-step trajectories, ``diffusion`` 47.0 dB (46.6 dB) and BF16 alone 48.8 dB (48.6 dB). The
tail is what took the last 3.4 dB: convolutions of the last up block were the most sensitive
(their activations back in float: +3.4 dB; any other block's: at most +0.3 dB).
"""

from collections.abc import Callable
from pathlib import Path

from edgesr.errors import BackendUnavailableError, EdgesrError, first_line
from edgesr.export.quantize_common import import_nncf

#: Ops whose outputs carry shapes, not values: an op reached through one is not on the image path.
SHAPE_OPS = ("ShapeOf",)
#: OpenVINO upsampling ops: the convolutions after the last one run at the output resolution.
UPSAMPLING_OPS = ("Interpolate", "ConvolutionBackpropData", "DepthToSpace")
#: Ops a constant weight may pass through on its way to a MatMul.
WEIGHT_PATH_OPS = ("Convert", "Reshape", "Transpose", "Unsqueeze")


def image_path(model) -> set[str]:
    """Names of the ops of an OpenVINO ``model`` that the image input (the rank-4 input: the
    latents, the noisy image) reaches, through values (not shapes)."""
    stack = [p for p in model.get_parameters()
             if p.get_partial_shape().rank.is_static
             and p.get_partial_shape().rank.get_length() == 4]
    reached: set[str] = set()
    while stack:
        node = stack.pop()
        if node.get_friendly_name() in reached or node.get_type_name() in SHAPE_OPS:
            continue
        reached.add(node.get_friendly_name())
        stack.extend(i.get_node() for o in node.outputs() for i in o.get_target_inputs())
    return reached


def _constant(node) -> bool:
    while node.get_type_name() in WEIGHT_PATH_OPS:
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def float_scope(model) -> list[str]:
    """The ops of ``model`` the ``diffusion`` layout keeps in float (see the module
    docstring): MatMuls and convolutions off the image path, the first convolution and those
    after the last upsampling, MatMuls of two activations."""
    ops = model.get_ordered_ops()
    on_path = image_path(model)
    weighted = [op for op in ops if op.get_type_name() in ("MatMul", "Convolution")]
    convs = [op for op in weighted if op.get_type_name() == "Convolution"]
    ups = [i for i, op in enumerate(ops) if op.get_type_name() in UPSAMPLING_OPS]
    tail = [op for op in ops[ups[-1] + 1:] if op.get_type_name() == "Convolution"] if ups else []
    kept = {op.get_friendly_name() for op in weighted if op.get_friendly_name() not in on_path}
    kept |= {op.get_friendly_name() for op in convs[:1] + convs[-1:] + tail}
    kept |= {op.get_friendly_name() for op in weighted if op.get_type_name() == "MatMul"
             and not any(_constant(v.get_node()) for v in op.input_values())}
    return sorted(kept)


def _quantize(model, feeds, **kwargs):
    nncf = import_nncf()
    return nncf.quantize(model, nncf.Dataset(feeds.feeds), subset_size=len(feeds),
                         model_type=nncf.ModelType.TRANSFORMER, **kwargs)


def weights(model, feeds) -> tuple[object, str]:
    return (import_nncf().compress_weights(model),
            "INT8 weights (NNCF compress_weights), float activations")


def all_ops(model, feeds) -> tuple[object, str]:
    return (_quantize(model, feeds),
            f"INT8 weights and activations of every op NNCF quantizes ({len(feeds)} recorded "
            "feeds)")


def diffusion(model, feeds) -> tuple[object, str]:
    nncf = import_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    kept = float_scope(model)
    quantized = _quantize(
        model, feeds, ignored_scope=nncf.IgnoredScope(names=kept, validate=False),
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MEAN_QUANTILE))
    return (quantized, f"INT8 weights and activations on the image path, {len(kept)} "
            f"MatMul/Conv kept in float ({len(feeds)} recorded feeds)")


#: --preset -> (OpenVINO model, FeedSet) -> (the INT8 model, a note).
LAYOUTS: dict[str, Callable] = {"diffusion": diffusion, "weights": weights,
                                "sr-safe": weights, "all-ops": all_ops}
DEFAULT_LAYOUT = "diffusion"
#: The layout a VAE decoder gets under a --preset, where it differs: it runs once per image,
#: so its INT8 activations would cost quality for little time.
DECODER_LAYOUTS = {"diffusion": "weights"}
DECODERS = ("vae_decoder.onnx",)


def graph_layout(layout: str, graph: str) -> str:
    """The layout graph file ``graph`` gets under ``--preset layout``."""
    return DECODER_LAYOUTS.get(layout, layout) if graph in DECODERS else layout


def write_int8_ir(layout: str, source: Path, target: Path, feeds) -> str:
    """The IR of graph ``source`` in INT8 ``layout`` written beside ``target`` (``.xml``,
    ``.bin``); a note on what it holds."""
    import openvino as ov

    layout = graph_layout(layout, source.name)
    try:
        model, note = LAYOUTS[layout](ov.Core().read_model(str(source)), feeds)
    except BackendUnavailableError:
        raise
    except Exception as exc:  # OpenVINO and NNCF raise many kinds
        raise EdgesrError(f"{source}: INT8 ({layout}) failed: {first_line(exc)}") from None
    ov.save_model(model, str(target.with_suffix(".xml")), compress_to_fp16=False)
    return f"{source.name} {note}"
