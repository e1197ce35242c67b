"""The models a service runs, each loaded once (``edgesr.load``) under a name requests use."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesr.api import Session, load
from edgesr.errors import EdgesrError
from edgesr.models.zoo import BUNDLED_MODELS, DEFAULT_MODEL


@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    """One named model and how to run it: ``settings`` are ``edgesr.load``'s keyword arguments
    (backend, precision, device, tile, overlap, backend options such as threads)."""

    name: str
    model: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def tiling(self) -> dict[str, int]:
        """Its tile and overlap (``edgesr.load``'s defaults where not set)."""
        return {"tile": self.settings.get("tile", 256), "overlap": self.settings.get("overlap", 32)}


def parse_model(text: str) -> tuple[str, str]:
    """(name, model) from ``NAME=MODEL`` or ``MODEL`` (named for its bundled name or file stem)."""
    name, sep, model = text.partition("=")
    if not sep:
        model = text
        name = text if text in BUNDLED_MODELS else Path(text).stem
    if not name or not model:
        raise EdgesrError(f"--model {text!r}: expected NAME=MODEL or MODEL")
    return name, model


def engine_specs(models: list[str] | None, **settings: Any) -> list[EngineSpec]:
    """Specs for ``--model`` values (default: the bundled model), names unique, each loaded with
    ``settings`` (``edgesr.load``'s keyword arguments)."""
    specs: dict[str, EngineSpec] = {}
    for text in models or [DEFAULT_MODEL]:
        name, model = parse_model(text)
        if name in specs:
            raise EdgesrError(f"two models are named {name!r}; name them: --model NAME=MODEL")
        specs[name] = EngineSpec(name=name, model=model, settings=settings)
    return list(specs.values())


def load_engines(specs: list[EngineSpec]) -> dict[str, Session]:
    """Load every spec once; on a failure the ones already loaded are closed."""
    engines: dict[str, Session] = {}
    try:
        for spec in specs:
            engines[spec.name] = load(spec.model, **spec.settings)
    except BaseException:
        close_engines(engines)
        raise
    return engines


def close_engines(engines: dict[str, Session]) -> None:
    for session in engines.values():
        session.close()
