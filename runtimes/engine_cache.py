"""Engine cache: built engines (TensorRT plans, OpenVINO IRs, CoreML packages) keyed by every
input of their build, so a stale or foreign engine is rebuilt and never loaded.

An entry is a folder ``<root>/<backend>/<name>/`` holding the artifact and ``manifest.json``
(the full key plus the sha256 of every file: a file it does not list, or a listed file that
differs, means rebuild). The folder name encodes the model, precision,
further build inputs (as a digest: an INT8 build's calibration set and layout), shape profile
and device (after vs-mlrt's engine names); the backend version lives only in the manifest, so
upgrading a backend rebuilds the entry in place instead of piling up old ones.
Builds go to a temporary folder (``fsutil.temp_path``) that is renamed into place, under a
``fsutil.file_lock`` that keeps two builders, threads or processes, from building the same
entry at once; what killed builders left (build folders, replaced entries) is removed by the
next build in that backend's folder (``fsutil.clean_stale_temps``: by owner pid and age).
"""

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from edgesr.errors import BackendUnavailableError, EdgesrError
from edgesr.fsutil import (
    cache_dir,
    clean_stale_temps,
    file_lock,
    move_files,
    remove,
    replace_dir,
    sha256_file,
    staging_dir,
    temp_path,
)
from edgesr.runtimes.registry import BUILD_OPTIONS, EngineSpec, engine_backends, entry, load

MANIFEST = "manifest.json"


class EngineCacheError(EdgesrError):
    """An engine could not be built into, or read from, the engine cache."""


@dataclass(frozen=True, kw_only=True)
class ShapeProfile:
    """Input shapes an engine accepts: (height, width) and batch, each as min / opt / max."""

    min_hw: tuple[int, int] = (16, 16)
    opt_hw: tuple[int, int] = (64, 64)
    max_hw: tuple[int, int] = (256, 256)
    batch: tuple[int, int, int] = (1, 1, 1)

    def __post_init__(self) -> None:
        hws = (self.min_hw, self.opt_hw, self.max_hw)
        ordered = all(a <= b <= c for a, b, c in zip(*hws, strict=True))
        if not ordered or not (1 <= self.batch[0] <= self.batch[1] <= self.batch[2]) \
                or min(self.min_hw) < 1:
            raise EdgesrError(f"shape profile needs 1 <= min <= opt <= max: {self.label}")

    @classmethod
    def fixed(cls, tile: int | tuple[int, int], batch: int = 1) -> "ShapeProfile":
        """A one-shape profile: every tile is ``tile`` (padded by the tiler), batch ``batch``."""
        hw = (tile, tile) if isinstance(tile, int) else tuple(tile)
        return cls(min_hw=hw, opt_hw=hw, max_hw=hw, batch=(batch, batch, batch))

    @property
    def is_fixed(self) -> bool:
        return self.min_hw == self.max_hw and self.batch[0] == self.batch[2]

    @property
    def label(self) -> str:
        """``b1_64x64`` for a fixed profile, else ``b1-2-4_16x16-64x64-256x256``."""
        if self.is_fixed:
            return f"b{self.batch[0]}_{self.opt_hw[0]}x{self.opt_hw[1]}"
        hws = "-".join(f"{h}x{w}" for h, w in (self.min_hw, self.opt_hw, self.max_hw))
        return f"b{'-'.join(map(str, self.batch))}_{hws}"


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """What to build: ``precision`` (backend-specific names, e.g. fp32/fp16/int8), the shape
    ``profile``, the target ``device`` (None: the backend's default), for TensorRT the builder
    ``workspace_mb`` limit, and for calibrated precisions (OpenVINO int8) the calibration set
    file ``calib`` (.npz from ``edgesr calibrate``), the nodes to ``keep`` in float and
    ``conv_only`` (quantize convolutions only), as ``quantize_openvino`` takes them."""

    precision: str = "fp32"
    profile: ShapeProfile = ShapeProfile()
    device: str | None = None
    workspace_mb: int = 1024
    calib: Path | None = None
    keep: tuple[str, ...] = ()
    conv_only: bool = False


@dataclass(frozen=True, kw_only=True)
class EngineKey:
    """Everything an engine depends on. ``profile`` labels the shape profile, ``device`` the
    hardware the engine is specific to (e.g. a GPU name and compute capability), ``inputs``
    any further build input as JSON (see ``check_options``; empty when there is none)."""

    model_sha256: str
    backend: str
    backend_version: str
    precision: str
    profile: str
    device: str
    inputs: str = ""

    @property
    def name(self) -> str:
        """The entry folder name: readable, and unique per key except the backend version."""
        extra = f"-{hashlib.sha256(self.inputs.encode()).hexdigest()[:12]}" if self.inputs else ""
        label = f"{self.model_sha256[:16]}-{self.precision}{extra}-{self.profile}-{self.device}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:160]


@dataclass(frozen=True)
class CacheEntry:
    """A valid cache entry: ``artifact`` is the engine file or folder; ``built`` is True when
    this call built it (a miss) and False on a hit."""

    artifact: Path
    key: EngineKey
    built: bool


def default_root() -> Path:
    """``$EDGESR_CACHE/engines`` (default ``~/.cache/edgesr/engines``)."""
    return cache_dir() / "engines"


class EngineCache:
    """Engines on disk under ``root``; see the module docstring for the layout."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def entry_dir(self, key: EngineKey) -> Path:
        return self.root / key.backend / key.name

    def lookup(self, key: EngineKey, artifact_name: str) -> Path | None:
        """The artifact of a valid entry for ``key``, or None when it is missing, was built
        for another key (stale or foreign), or any of its files fails its checksum."""
        folder = self.entry_dir(key)
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("key") != asdict(key):
            return None
        files = manifest.get("files")
        if not isinstance(files, dict) or files.keys() != _artifact_files(folder):
            return None  # every file in the entry is listed (a missing listing means rebuild)
        if not (artifact_name in files or any(n.startswith(f"{artifact_name}/") for n in files)):
            return None
        for name, digest in files.items():
            path = folder / name
            if not path.is_file() or sha256_file(path) != digest:
                return None
        return folder / artifact_name

    def get_or_build(self, key: EngineKey, artifact_name: str,
                     build: Callable[[Path], None]) -> CacheEntry:
        """Return the cached artifact for ``key``, building it first on a miss.

        ``build(path)`` must write the artifact (a file or a folder) at ``path``; it runs in a
        temporary folder that replaces the entry only once the build and manifest are done.
        """
        found = self.lookup(key, artifact_name)
        if found is not None:
            return CacheEntry(found, key, built=False)
        folder = self.entry_dir(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(folder.parent)  # build folders and old entries of killed builders
        with file_lock(folder.with_name(folder.name + ".lock")):
            found = self.lookup(key, artifact_name)  # another builder may have finished
            if found is not None:
                return CacheEntry(found, key, built=False)
            tmp = temp_path(folder)
            tmp.mkdir()
            try:
                build(tmp / artifact_name)
                if not (tmp / artifact_name).exists():
                    raise EngineCacheError(f"{key.backend}: the build wrote no {artifact_name}")
                files = {name: sha256_file(tmp / name) for name in sorted(_artifact_files(tmp))}
                manifest = {"key": asdict(key), "files": files}
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
                replace_dir(tmp, folder)
            finally:
                remove(tmp)
        return CacheEntry(folder / artifact_name, key, built=True)


def _artifact_files(folder: Path) -> set[str]:
    """Relative paths of every file in an entry folder but its manifest."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if not p.is_dir() and p.relative_to(folder).as_posix() != MANIFEST}


def artifact_files(artifact: Path) -> list[Path]:
    """The files of an engine: those beside ``artifact`` named ``<stem>.*`` (an IR's ``.bin``,
    its compiled model and sidecar), then the artifact itself (a file or folder), last."""
    beside = sorted(p for p in artifact.parent.glob(f"{artifact.stem}.*")
                    if p != artifact and p.is_file())
    return [*beside, artifact]


def copy_artifact(artifact: Path, output: Path) -> list[Path]:
    """Copy an engine (``artifact_files``) to ``output``, renaming ``<stem>.*`` to the output's
    stem; each file lands whole, the artifact last, so a present artifact means a whole
    engine. Returns the written paths, the artifact last."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    moves = []
    with staging_dir(output) as staging:
        for src in artifact_files(artifact):
            dst = output.with_name(output.stem + src.name[len(artifact.stem):])
            staged = staging / dst.name
            if src.is_dir():
                shutil.copytree(src, staged)
            else:
                shutil.copy2(src, staged)
            moves.append((staged, dst))
        for staged, dst in moves:
            if staged.is_dir():
                replace_dir(staged, dst)
            else:
                move_files([(staged, dst)])
    return [dst for _, dst in moves]


def model_sha256(path: Path) -> str:
    """sha256 of a model: a file's bytes, followed by those of the file its weights are in (an
    ncnn .param's .bin, an ONNX file's ``<file>.data``); for a folder (an exported diffusion
    model), of its files' relative paths and sha256s."""
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
        return digest.hexdigest()
    weights = {".param": path.with_suffix(".bin"), ".onnx": path.with_name(path.name + ".data")}
    extra = weights.get(path.suffix)
    if extra is None or (path.suffix == ".onnx" and not extra.is_file()):
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in (path, extra):
        with open(file, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


class Builder(Protocol):
    """Builds one backend's engines (named by its registry ``EngineSpec.builder``); a module
    with these two functions follows it."""

    def identity(self, options: BuildOptions) -> tuple[str, str, str]:
        """(backend version, device label, shape-profile label) of a build with ``options``."""
        ...

    def build(self, source: Path, target: Path, options: BuildOptions) -> None:
        """Write the engine built from model file ``source`` at ``target``."""
        ...


def _spec(backend: str) -> EngineSpec:
    """How ``backend`` builds engines, from its registry entry."""
    spec = entry(backend).engine
    if spec is None:
        raise BackendUnavailableError(f"backend {backend!r} builds no engines; engine backends: "
                                      f"{', '.join(engine_backends())}")
    return spec


def asked_options(options: BuildOptions) -> tuple[str, ...]:
    """The ``registry.BUILD_OPTIONS`` a build asks for: a fixed tile, a batch above 1, a
    device."""
    asked = {"tile": options.profile.is_fixed, "batch": options.profile.batch[2] > 1,
             "device": options.device is not None}
    return tuple(name for name in BUILD_OPTIONS if asked[name])


def check_options(backend: str, options: BuildOptions) -> str:
    """Check a build's options; return the key's ``inputs``.

    A fixed tile, a batch above 1 or a device (``asked_options``) that the backend's
    ``EngineSpec.takes`` does not list is refused, with its ``refuses`` reason. A precision
    the backend's ``EngineSpec.calibrated`` lists needs ``options.calib``, a calibration set;
    ``inputs`` is then the JSON of its sha256, ``keep`` and ``conv_only``. Any other precision
    takes none of the three and has empty ``inputs``.
    """
    spec = _spec(backend)
    refused = [BUILD_OPTIONS[name] for name in asked_options(options) if name not in spec.takes]
    if refused:
        takes = ", ".join(BUILD_OPTIONS[name] for name in spec.takes) or "none of them"
        raise EngineCacheError(f"{backend} builds take no {' or '.join(refused)} (it takes "
                               f"{takes}){': ' + spec.refuses if spec.refuses else ''}")
    calibrated = spec.calibrated
    if options.precision not in calibrated:
        if options.calib is not None or options.keep or options.conv_only:
            why = spec.no_calib or f"only {', '.join(calibrated)} does"
            raise EngineCacheError(f"{backend} {options.precision} takes no calibration set or "
                                   f"kept nodes: {why}")
        return ""
    if options.calib is None:
        raise EngineCacheError(f"{backend} {options.precision} needs a calibration set: "
                               "--calib calib.npz, written by edgesr calibrate")
    calib = Path(options.calib)
    if not calib.is_file():
        raise EngineCacheError(f"{calib}: calibration set not found")
    from edgesr.calibration import CalibrationSet

    CalibrationSet.load(calib)  # a clear error now for a file that is not one
    return json.dumps({"calib_sha256": sha256_file(calib), "keep": list(options.keep),
                       "conv_only": options.conv_only}, sort_keys=True)


def build_engine(backend: str, source: str | Path, options: BuildOptions = BuildOptions(), *,
                 cache: EngineCache | None = None) -> CacheEntry:
    """Build (or find in ``cache``) the engine of ``backend`` for model file ``source``.

    The backend's registry entry declares how (``registry.EngineSpec``: the artifact's file
    name, the model files it builds from, the calibrated precisions); its ``Builder`` gives the
    build's identity ``(backend_version, device, profile_label)`` and builds it.
    """
    inputs = check_options(backend, options)
    spec = _spec(backend)
    builder: Builder = load(backend, spec.builder)
    source = Path(source)
    if source.suffix not in spec.sources:
        raise EngineCacheError(f"{source}: {backend} builds from "
                               f"{' or '.join(spec.sources)} files")
    if not source.is_file():
        raise EngineCacheError(f"{source}: model file not found")
    version, device, profile = builder.identity(options)
    key = EngineKey(model_sha256=model_sha256(source), backend=backend, backend_version=version,
                    precision=options.precision, profile=profile, device=device,
                    inputs=inputs)
    return (cache or EngineCache()).get_or_build(
        key, spec.artifact, lambda target: builder.build(source, target, options))
