"""The backend registry: entries, ``backend:precision``, and errors that tell the truth (only a
missing declared dependency says "pip install")."""

import sys

import pytest

from edgesr.errors import BackendUnavailableError, EdgesrError
from edgesr.runtimes.registry import (
    BACKENDS,
    BackendEntry,
    BackendLoadError,
    config_for,
    create_runtime,
    engine_backends,
    entry,
    load,
    parse_variant,
    precision_options,
    quantize_backends,
    quantize_precisions,
)


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Write throwaway modules ``name -> source`` on sys.path; forget them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def write(name: str, source: str) -> None:
        (tmp_path / f"{name}.py").write_text(source)
        written.append(name)

    yield write
    for name in written:
        sys.modules.pop(name, None)


def _entry(module: str, **fields) -> BackendEntry:
    return BackendEntry(name="fake", runtime=f"{module}:Runtime", config=f"{module}:Config",
                        **fields)


def test_a_missing_declared_dependency_says_install(modules):
    modules("fake_needs_dep", "import edgesr_no_such_dependency\n")
    fake = _entry("fake_needs_dep", requires=("edgesr-no-such-dependency",))
    with pytest.raises(BackendUnavailableError, match="backend 'fake' needs "
                       "edgesr_no_such_dependency .*pip install edgesr-no-such-dependency"):
        load(fake, fake.runtime)


def test_a_missing_submodule_of_a_declared_dependency_says_install(modules):
    modules("fake_needs_sub", "import edgesr_fake_dep.sub\n")
    modules("edgesr_fake_dep", "")  # the package is there, its submodule is not
    fake = _entry("fake_needs_sub", requires=("fake-dep-dist",), modules=("edgesr_fake_dep",),
                  install="'edgesr[fake]'")
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgesr\[fake\]'"):
        load(fake, fake.runtime)


@pytest.mark.parametrize("source", [
    "import edgesr_not_declared_anywhere\n",  # a module the backend does not declare
    "from edgesr.errors import NoSuchName\n",  # an ImportError of edgesr's own code
    "raise RuntimeError('a bug at import\\nsecond line')\n",  # any other exception
])
def test_any_other_import_failure_is_a_load_error_not_an_install_hint(modules, source):
    modules("fake_broken", source)
    fake = _entry("fake_broken", requires=("numpy",))
    with pytest.raises(BackendLoadError, match="backend 'fake' failed to load: ") as info:
        load(fake, fake.runtime)
    message = str(info.value)
    assert "install" not in message and "\n" not in message
    assert isinstance(info.value.__cause__, Exception)  # the bug's traceback is kept


def test_a_missing_attribute_is_a_load_error(modules):
    modules("fake_empty", "")
    fake = _entry("fake_empty")
    with pytest.raises(BackendLoadError, match="failed to load: AttributeError"):
        load(fake, fake.runtime)


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tflite'; available: "
                       ".*onnxruntime.*torch"):
        entry("tflite")


def test_entries_declare_what_other_modules_used_to_list():
    assert list(BACKENDS)[:2] == ["torch", "onnxruntime"]
    assert engine_backends()[:3] == ["openvino", "tensorrt", "coreml"]
    assert quantize_backends() == ("onnxruntime", "openvino", "sd-upscaler", "sr3",
                                   "sd-upscaler-openvino", "sr3-openvino")
    assert quantize_precisions() == ("fp16", "int8", "bf16")
    assert [n for n, e in BACKENDS.items() if e.diffusion] == [
        "sd-upscaler", "sr3", "sd-upscaler-openvino", "sr3-openvino", "sd-upscaler-tensorrt",
        "sr3-tensorrt", "sd-upscaler-coreml", "sr3-coreml", "sd-upscaler-torch", "sr3-torch"]
    assert [n for n, e in BACKENDS.items() if e.baseline] == [
        "torch", "sd-upscaler-torch", "sr3-torch"]
    assert [n for n in engine_backends() if entry(n).diffusion] == [
        "sd-upscaler-openvino", "sr3-openvino", "sd-upscaler-tensorrt", "sr3-tensorrt",
        "sd-upscaler-coreml", "sr3-coreml"]  # every sampler backend but ONNX Runtime's builds
    assert entry("openvino").engine.calibrated == ("int8",)
    assert "Q/DQ" in entry("tensorrt").engine.no_calib


def test_variants_and_precisions():
    assert parse_variant("openvino:fp16") == ("openvino", "fp16")
    assert parse_variant("torch") == ("torch", None)
    with pytest.raises(EdgesrError, match="BACKEND:PRECISION"):
        parse_variant("torch:")
    assert precision_options("openvino", "bf16") == {"precision": "bf16"}
    assert precision_options("torch", "fp32") == {}  # its one precision: no option
    assert precision_options("torch", None) == {}
    with pytest.raises(EdgesrError, match="backend 'torch' has no precision option 'fp16' "
                       r"\(it runs fp32\)"):
        precision_options("torch", "fp16")


def test_config_and_runtime_from_the_entry(tmp_path):
    assert config_for("onnxruntime", threads=2).threads == 2
    runtime = create_runtime("torch", tmp_path / "model.pth")
    assert runtime.name == "torch" and not runtime.is_active


def test_device_options_follow_the_config_field(monkeypatch):
    from dataclasses import dataclass

    from edgesr.runtimes import registry

    @dataclass(frozen=True, kw_only=True)
    class IndexConfig:
        device: int = 0

    @dataclass(frozen=True, kw_only=True)
    class NoDeviceConfig:
        threads: int = 0

    assert registry.device_options("onnxruntime", "cuda") == {"device": "cuda"}
    assert registry.device_options("onnxruntime", None) == {}
    configs = {"gpu": IndexConfig, "single": NoDeviceConfig}
    monkeypatch.setattr(registry, "config_class", configs.__getitem__)
    assert registry.device_options("gpu", "1") == {"device": 1}
    with pytest.raises(EdgesrError, match="device index, not 'GPU'"):
        registry.device_options("gpu", "GPU")
    with pytest.raises(EdgesrError, match="takes no --device"):
        registry.device_options("single", "cpu")


def test_native_precisions_come_from_the_entry():
    from edgesr import cpu
    from edgesr.runtimes.registry import native_precisions

    assert native_precisions("onnxruntime") == ()  # no hook: auto runs the default
    pytest.importorskip("openvino")
    with cpu.simulate(cpu.CpuInfo(model="amx", flags=frozenset({"amx_bf16"}))):
        assert native_precisions("openvino") == ("bf16", "fp32")
        assert native_precisions("openvino", "GPU") == ("fp16", "fp32")
    with cpu.simulate(cpu.CpuInfo(model="avx2", flags=frozenset({"avx2"}))):
        assert native_precisions("openvino", "CPU") == ("fp32",)
