"""How a sampler runs its networks: a *session factory* opens one graph file as a ``Session``.

The samplers (``sd_upscaler``, ``sr3``) never open a runtime themselves; they are given a
factory, so the same sampling loop can run its UNet and VAE on any backend that runs a
multi-input graph: ONNX Runtime (``onnxruntime_sessions`` here), OpenVINO
(``openvino_sessions``), TensorRT, CoreML, or PyTorch eager on the modules the export was traced
from (``torch_sessions``). A sampler backend's Config carries
the options of one engine (``OnnxRuntimeSessionOptions`` and its siblings), whose ``sessions``
method makes the factory, so the runtime never asks which engine it has.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgesr.errors import CheckpointError, EdgesrError, first_line


class Session(Protocol):
    """One loaded graph; ``precision``: what the engine reports it runs (None: it cannot
    tell)."""

    precision: str | None

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs, in order, for named inputs."""
        ...

    def metadata(self) -> dict[str, str]:
        """The graph's custom metadata (edgesr writes its own there at export)."""
        ...


#: Opens the graph at a path (an exported ``.onnx``) as a Session.
SessionFactory = Callable[[Path], Session]


def onnx_metadata(path: Path) -> dict[str, str]:
    """The custom metadata of ONNX file ``path`` (its weights are not read)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a corrupt file
        raise CheckpointError(f"{path}: not a readable ONNX file ({first_line(exc)})") from None
    return {p.key: p.value for p in model.metadata_props}


@dataclass(frozen=True, kw_only=True)
class OnnxRuntimeSessionOptions:
    """``device``/``providers``/``threads`` as for the onnxruntime backend."""

    device: str = "cpu"
    providers: tuple[str, ...] = ()
    threads: int = 0

    @property
    def where(self) -> str:
        """The device it runs on, as the upscale line names it."""
        return self.device

    def check_engine(self, backend: str) -> None:
        from edgesr.runtimes.onnxruntime_runtime import DEVICE_PROVIDERS

        if self.device not in DEVICE_PROVIDERS:
            raise EdgesrError(f"{backend}: unknown device {self.device!r}; "
                              f"choose from {', '.join(DEVICE_PROVIDERS)}")
        if self.threads < 0:
            raise EdgesrError(f"{backend}: need threads >= 0")

    def sessions(self, backend: str) -> SessionFactory:
        return onnxruntime_sessions(backend, device=self.device, providers=self.providers,
                                    threads=self.threads)


class OnnxRuntimeSession:
    """A Session on an ``onnxruntime.InferenceSession``; ``precision``: the graph's own (int8
    for Q/DQ, fp16 with FP16 weights, else fp32), which ONNX Runtime runs as it is."""

    def __init__(self, session, path: Path) -> None:
        from edgesr.runtimes.tensorrt_build import onnx_precision

        self.session = session
        self.precision: str | None = onnx_precision(path)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, inputs)

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)


def onnxruntime_sessions(backend: str, *, device: str, providers: tuple[str, ...] = (),
                         threads: int = 0) -> SessionFactory:
    """A factory of ONNX Runtime sessions on ``providers`` (or those of ``device``); a missing
    provider or an unloadable file is one clear line naming ``backend``."""
    import onnxruntime as ort

    from edgesr.runtimes.onnxruntime_runtime import DEVICE_PROVIDERS, require_providers

    chosen = list(providers or DEVICE_PROVIDERS[device])
    require_providers(backend, chosen)

    def open_session(path: Path) -> Session:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:  # onnxruntime's load errors are not one class
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)})"
                                  ) from None
        return OnnxRuntimeSession(session, path)

    return open_session


def ran(sessions: dict[str, Session]) -> tuple[str | None, str]:
    """(precision, note) a sampler reports from its graphs' sessions, by graph name: the first
    graph's precision (the UNet or denoiser, where the time goes), and a note naming any graph
    that runs at another one."""
    (_, first), *others = sessions.items()
    differ = [f"{name} at {s.precision or 'an unreported precision'}"
              for name, s in others if s.precision != first.precision]
    return first.precision, "; ".join(differ)


class StageTimer:
    """Wall time and calls per graph (keyed by file stem: ``unet``, ``vae_decoder``, an SR3
    denoiser's name) of the sessions opened through ``wrap``; what ``edgesr bench`` reports as
    per-step UNet and VAE time (one UNet call per step unless latent-tiled)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, factory: SessionFactory) -> SessionFactory:
        return lambda path: TimedSession(factory(path), self, path.stem)

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.calls = dict.fromkeys(self.calls, 0)

    def report(self) -> dict[str, dict[str, float]]:
        return {name: {"seconds": s, "calls": self.calls[name],
                       "ms_per_call": 1e3 * s / self.calls[name] if self.calls[name] else None}
                for name, s in self.seconds.items()}


class TimedSession:
    """A Session whose ``run`` adds its wall time and one call to ``timer`` under ``name``."""

    def __init__(self, inner: Session, timer: StageTimer, name: str) -> None:
        self.inner, self.timer, self.name = inner, timer, name
        self.precision = inner.precision
        timer.seconds.setdefault(name, 0.0)
        timer.calls.setdefault(name, 0)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        start = time.perf_counter()
        try:
            return self.inner.run(inputs)
        finally:
            self.timer.seconds[self.name] += time.perf_counter() - start
            self.timer.calls[self.name] += 1

    def metadata(self) -> dict[str, str]:
        return self.inner.metadata()
