"""ncnn backend: runs an ncnn .param/.bin model (the engine of realesrgan-ncnn-vulkan and
Upscayl) on the CPU, or on a Vulkan GPU where this ncnn build has one.

Precision is set through ncnn's option flags: "fp32" turns fp16/bf16 storage and arithmetic off
(ncnn's own default stores fp16 where it can), "fp16" turns fp16 storage, packing and arithmetic
on. Whether fp16 really ran is measured, not assumed: a probe input is run through the fp16 net
and an fp32 one, and identical outputs mean this CPU's ncnn kernels ran fp32
(``RuntimeInfo.precision`` says which ran). Scale, size multiple and channels come from a probe
run, as for ONNX files without metadata; input channels from the first Convolution (and any
pixel-unshuffle ``Reorg`` before it). The .bin is checked against the .param first where every
layer's weights are known to ``ncnn_param`` (ncnn would run a .bin of the wrong size on garbage).
A checkpoint reaches it exported (``model_kinds``).
"""

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import ncnn
import numpy as np

from edgesr.errors import BackendUnavailableError, CheckpointError, EdgesrError, InferenceError
from edgesr.models.ncnn_param import (
    WEIGHT_TYPES,
    BinReader,
    NcnnLayer,
    parse_param,
    read_weights,
)
from edgesr.runtimes.base import Runtime, RuntimeInfo

DEVICES = ("cpu", "vulkan")
PRECISIONS = ("fp32", "fp16")
PROBE_MULTIPLES = (1, 2, 4, 8, 16)


@dataclass(frozen=True, kw_only=True)
class NcnnConfig:
    """``device``: "cpu" or "vulkan" (the GPU ``gpu``, where this ncnn build has Vulkan);
    ``threads``: CPU threads (0 keeps ncnn's default, the big cores); ``precision``: "fp32"
    (default, exact) or "fp16" (ncnn's fp16 storage and arithmetic flags)."""

    device: str = "cpu"
    gpu: int = 0
    threads: int = 0
    precision: str = "fp32"
    preferred_batch: int = 1

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise EdgesrError(f"ncnn: unknown device {self.device!r}; choose from "
                              f"{', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise EdgesrError(f"ncnn: precision must be one of {', '.join(PRECISIONS)}, "
                              f"not {self.precision!r}")
        if self.threads < 0 or self.gpu < 0 or self.preferred_batch < 1:
            raise EdgesrError("ncnn: threads and gpu must be >= 0 and preferred_batch >= 1")


def _quiet_gpu_count() -> int:
    """ncnn's Vulkan device count, its loader's complaints on stderr silenced."""
    stderr = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            return int(ncnn.get_gpu_count())
    finally:
        os.dup2(stderr, 2)
        os.close(stderr)


class NcnnRuntime(Runtime):
    """Runs an ncnn .param/.bin model with the ``ncnn`` package."""

    name = "ncnn"

    def __init__(self, model_path: str | Path, config: NcnnConfig | None = None):
        super().__init__()
        self.model_path = Path(model_path)
        self.config = config or NcnnConfig()
        self.net: ncnn.Net | None = None
        self._input, self._output = "", ""

    def activate_impl(self) -> RuntimeInfo:
        param = self._param_path()
        if self.config.device == "vulkan" and _quiet_gpu_count() <= self.config.gpu:
            raise BackendUnavailableError(
                f"ncnn: no Vulkan GPU {self.config.gpu} (this ncnn build sees "
                f"{_quiet_gpu_count()}); use device=cpu")
        layers, weights = parse_param(param), param.with_suffix(".bin")
        if not weights.is_file():
            raise CheckpointError(f"{weights}: ncnn .bin not found (the weights of {param.name})")
        if all(layer.type in WEIGHT_TYPES for layer in layers):  # ncnn does not check sizes
            read_weights(layers, BinReader(weights), param)
        channels = _input_channels(layers, param)
        self.net = self._load(param, self.config.precision)
        self._input, self._output = self.net.input_names()[0], self.net.output_names()[-1]
        scale, multiple, out_channels, probe = self._probe(channels)
        ran, asked = self._measured_precision(param, probe), self.config.precision
        note = f"{asked} asked; ncnn's kernels here ran {ran}" if ran != asked else ""
        device = f"vulkan:{self.config.gpu}" if self.config.device == "vulkan" else "cpu"
        return RuntimeInfo(scale=scale, in_channels=channels, out_channels=out_channels,
                           size_multiple=multiple, preferred_batch=self.config.preferred_batch,
                           precision=ran, precision_note=note, device=device)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        info = self.info
        height, width = batch.shape[2:]
        if height % info.size_multiple or width % info.size_multiple:
            raise InferenceError(f"{self.name}: input {height}x{width} is not divisible by the "
                                 f"model's size multiple {info.size_multiple}")
        return np.stack([self._run(image) for image in batch])

    def deactivate_impl(self) -> None:
        if self.net is not None:
            self.net.clear()
        self.net = None

    def _param_path(self) -> Path:
        path = self.model_path
        if not path.is_file():
            raise CheckpointError(f"{path}: ncnn model not found")
        if path.suffix != ".param":
            raise CheckpointError(f"{path}: the ncnn backend runs ncnn .param/.bin files (edgesr "
                                  "upscale -b ncnn exports a checkpoint first; or edgesr export "
                                  "MODEL -o MODEL.param)")
        return path

    def _load(self, param: Path, precision: str) -> "ncnn.Net":
        cfg = self.config
        net = ncnn.Net()
        opt = net.opt
        half = precision == "fp16"
        opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = half
        opt.use_bf16_storage = False
        opt.use_vulkan_compute = cfg.device == "vulkan"
        if cfg.device == "vulkan":
            net.set_vulkan_device(cfg.gpu)
        if cfg.threads:
            opt.num_threads = cfg.threads
        if net.load_param(str(param)) != 0:
            raise CheckpointError(f"{param}: ncnn cannot load this .param")
        if net.load_model(str(param.with_suffix(".bin"))) != 0:
            raise CheckpointError(f"{param.with_suffix('.bin')}: ncnn cannot load these weights")
        if not net.input_names() or not net.output_names():
            raise CheckpointError(f"{param}: ncnn graph without an input or output blob")
        return net

    def _run(self, image: np.ndarray, net: "ncnn.Net | None" = None) -> np.ndarray:
        net = net or self.net
        assert net is not None
        with net.create_extractor() as extractor:
            extractor.input(self._input, ncnn.Mat(np.ascontiguousarray(image)))
            status, out = extractor.extract(self._output)
        if status != 0:
            raise InferenceError(f"{self.name}: ncnn extract failed with status {status}")
        return np.array(out, dtype=np.float32, copy=True).reshape(out.c, out.h, out.w)

    def _probe(self, channels: int) -> tuple[int, int, int, np.ndarray]:
        """(scale, size multiple, output channels, the probe input): the first side 16 + m
        (m in PROBE_MULTIPLES) that comes back exactly k times larger."""
        rng = np.random.default_rng(0)
        for multiple in PROBE_MULTIPLES:
            side = 16 + multiple
            x = rng.random((channels, side, side), dtype=np.float32)
            with contextlib.suppress(InferenceError):
                out = self._run(x)
                scale = out.shape[1] // side
                if scale >= 1 and out.shape[1:] == (scale * side, scale * side):
                    return scale, multiple, out.shape[0], x
        raise CheckpointError(f"{self.model_path}: no probe input came back an integer scale "
                              "larger; cannot tell the model's scale")

    def _measured_precision(self, param: Path, probe: np.ndarray) -> str:
        """"fp32", or "fp16" when the fp16 net's output differs from an fp32 net's."""
        if self.config.precision == "fp32":
            return "fp32"
        reference = self._load(param, "fp32")
        try:
            same = np.array_equal(self._run(probe), self._run(probe, reference))
        finally:
            reference.clear()
        return "fp32" if same else "fp16"


def _input_channels(layers: list[NcnnLayer], param: Path) -> int:
    """Input channels: the first Convolution's, divided by the square of the stride of any
    pixel-unshuffle (``Reorg``) before it."""
    fold = 1
    for layer in layers:
        if layer.type == "Reorg":
            fold *= int(layer.params.get(0, 1)) ** 2
        elif layer.type == "Convolution":
            outputs, kw = int(layer.params.get(0, 0)), int(layer.params.get(1, 0))
            kh = int(layer.params.get(11, kw))
            size = int(layer.params.get(6, 0))
            if outputs and kw and kh and size % (outputs * kw * kh * fold) == 0:
                return size // (outputs * kw * kh * fold)
            break
    raise CheckpointError(f"{param}: cannot tell the input channels (no plain first "
                          "Convolution)")
