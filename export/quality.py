"""Quality report of a reduced-precision artifact against the FP32 model, and the gate that says no.

Both models upscale the same held-out images; outputs are clipped to [0, 1] (what gets written)
and compared by max abs difference, PSNR, SSIM and the share of pixel values off by more than
2/255. ``check_quality`` raises ``QualityGateError`` when PSNR is under ``min_psnr``, so a build
can refuse to ship a bad engine.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgesr.errors import EdgesrError, ExportError, first_line
from edgesr.fidelity import psnr_from_mse
from edgesr.fsutil import write_text

#: A pixel value "visibly off" differs by more than this.
OFF_THRESHOLD = 2.0 / 255.0

Runner = Callable[[np.ndarray], np.ndarray]


class QualityGateError(EdgesrError):
    """A quantized artifact's quality is below the required PSNR."""


@dataclass(frozen=True)
class ImageMetrics:
    """Candidate vs reference on one image (values in [0, 1])."""

    max_abs_diff: float
    mse: float
    psnr: float
    ssim: float
    share_off: float


@dataclass(frozen=True, kw_only=True)
class QualityReport:
    """Metrics over all held-out images: ``psnr`` from the pooled MSE, ``min_psnr`` the worst
    image, ``ssim`` the mean, ``share_off`` the share of values off by more than 2/255."""

    artifact: str
    precision: str
    reference: str
    max_abs_diff: float
    psnr: float
    min_psnr: float
    ssim: float
    share_off: float
    images: list[ImageMetrics] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One printable line."""
        return (f"{self.precision} {Path(self.artifact).name} vs {self.reference}: "
                f"PSNR {self.psnr:.2f} dB (worst image {self.min_psnr:.2f}), "
                f"SSIM {self.ssim:.5f}, max abs diff {self.max_abs_diff:.4f}, "
                f"{100 * self.share_off:.3f}% of values off by > 2/255 "
                f"({len(self.images)} images)")

    def write_json(self, path: str | Path) -> Path:
        """Write the report as JSON, whole or not at all (``fsutil.write_text``)."""
        path = Path(path)
        try:
            write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        except OSError as exc:
            raise EdgesrError(f"{path}: cannot write the quality report ({exc})") from None
        return path


def _gaussian_filter(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """'Valid' separable filtering of an HWC array over H and W."""
    n = len(window)
    x = np.lib.stride_tricks.sliding_window_view(x, n, axis=0) @ window
    return np.lib.stride_tricks.sliding_window_view(x, n, axis=1) @ window


def ssim(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: 11-tap Gaussian, sigma 1.5, data range 1) over HWC images."""
    a, b = reference.astype(np.float64), candidate.astype(np.float64)
    size = min(11, a.shape[0], a.shape[1])
    size -= 1 - size % 2
    t = np.arange(size) - size // 2
    window = np.exp(-(t**2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _gaussian_filter(a, window), _gaussian_filter(b, window)
    var_a = _gaussian_filter(a * a, window) - mu_a**2
    var_b = _gaussian_filter(b * b, window) - mu_b**2
    cov = _gaussian_filter(a * b, window) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def compare(reference: np.ndarray, candidate: np.ndarray) -> ImageMetrics:
    """Metrics of ``candidate`` against ``reference``: HWC arrays of equal shape, clipped to [0, 1].

    Non-finite candidate values (FP16 overflow) count as maximally wrong.
    """
    if reference.shape != candidate.shape:
        raise EdgesrError(f"cannot compare outputs of shapes {reference.shape} and "
                          f"{candidate.shape}")
    ref = np.clip(reference.astype(np.float32), 0, 1)
    cand = np.clip(np.nan_to_num(candidate.astype(np.float32)), 0, 1)
    bad = ~np.isfinite(candidate)
    cand[bad] = 1.0 - np.round(ref[bad])
    diff = np.abs(ref - cand)
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return ImageMetrics(max_abs_diff=float(diff.max()), mse=mse, psnr=psnr_from_mse(mse),
                        ssim=ssim(ref, cand), share_off=float(np.mean(diff > OFF_THRESHOLD)))


def quality_report(reference: Runner, candidate: Runner, images: Sequence[np.ndarray], *,
                   artifact: str, precision: str, reference_name: str = "FP32 PyTorch",
                   extra: dict | None = None) -> QualityReport:
    """Run both models on each HWC image and aggregate the metrics into a QualityReport."""
    if not images:
        raise EdgesrError("quality report needs at least one held-out image")
    metrics = []
    for img in images:
        batch = np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32)
        ref = reference(batch)[0].transpose(1, 2, 0)
        cand = candidate(batch)[0].transpose(1, 2, 0)
        metrics.append(compare(ref, cand))
    return QualityReport(
        artifact=str(artifact), precision=precision, reference=reference_name,
        max_abs_diff=max(m.max_abs_diff for m in metrics),
        psnr=psnr_from_mse(float(np.mean([m.mse for m in metrics]))),
        min_psnr=min(m.psnr for m in metrics),
        ssim=float(np.mean([m.ssim for m in metrics])),
        share_off=float(np.mean([m.share_off for m in metrics])),
        images=metrics, extra=extra or {})


def check_quality(report: QualityReport, min_psnr: float | None) -> None:
    """Raise QualityGateError when ``report.psnr`` is below ``min_psnr`` (None: no gate)."""
    if min_psnr is not None and report.psnr < min_psnr:
        raise QualityGateError(
            f"{report.precision} {Path(report.artifact).name}: PSNR {report.psnr:.2f} dB vs "
            f"{report.reference} is below --min-psnr {min_psnr:g} dB; artifact not written")


def torch_runner(model) -> Runner:
    """FP32 PyTorch eager inference of an nn.Module (or a ModelDescriptor's model)."""
    import torch

    module = getattr(model, "model", model).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(batch)).float().numpy()

    return run


def onnx_runner(path: str | Path, threads: int = 0) -> Runner:
    """ONNX Runtime CPU inference of an ONNX file with one input."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime's own error types: an invalid or damaged graph
        raise ExportError(f"{path}: ONNX Runtime cannot load it: {first_line(exc)}") from None
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0].astype(np.float32)


def openvino_runner(path: str | Path, inference_precision: str | None = None) -> Runner:
    """OpenVINO CPU inference of an IR (.xml) or ONNX file at ``inference_precision`` (``f32``
    or ``bf16``; default: the hint the IR records, else ``f32``, since OpenVINO would otherwise
    pick bf16 on its own on BF16 CPUs)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    if inference_precision is None:
        key = ["runtime_options", "INFERENCE_PRECISION_HINT"]
        inference_precision = (model.get_rt_info(key).astype(str) if model.has_rt_info(key)
                               else "f32")
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": inference_precision})
    request = compiled.create_infer_request()
    return lambda batch: np.array(request.infer([batch])[0], dtype=np.float32)


def artifact_runner(path: str | Path) -> Runner:
    """A runner for a built artifact: OpenVINO IR (.xml) on OpenVINO, ONNX on ONNX Runtime."""
    return openvino_runner(path) if Path(path).suffix == ".xml" else onnx_runner(path)
