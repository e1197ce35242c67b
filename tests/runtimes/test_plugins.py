"""Third-party backends through the ``edgesr.backends`` entry-point group: a throwaway plugin
package on disk (its own module and a ``*.dist-info/entry_points.txt``, no pip) is found by
``edgesr backends``, ``upscale --backend``, ``compare`` and ``bench`` without touching any
edgesr file; a broken plugin is one line and leaves the built-in backends working."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgesr.runtimes import plugins
from edgesr.runtimes.registry import BackendEntry, entries, entry, plugin_errors

PLUGIN_INIT = '''
"""edgesr backend plugin: nearest-neighbour "models" in NumPy (a JSON file with a scale)."""
from edgesr.runtimes.registry import BackendEntry

ENTRY = BackendEntry(name="nearest", runtime="edgesr_nearest.runtime:NearestRuntime",
                     config="edgesr_nearest.runtime:NearestConfig", requires=("numpy",),
                     suffixes=(".nearest",))
'''
PLUGIN_RUNTIME = '''
import json
from dataclasses import dataclass
from pathlib import Path

from edgesr.errors import CheckpointError
from edgesr.runtimes.base import Runtime, RuntimeInfo


@dataclass(frozen=True, kw_only=True)
class NearestConfig:
    threads: int = 0


class NearestRuntime(Runtime):
    name = "nearest"

    def __init__(self, model, config=None):
        super().__init__()
        self.path, self.config = Path(model), config or NearestConfig()

    def activate_impl(self):
        try:
            self.scale = int(json.loads(self.path.read_text())["scale"])
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{self.path}: not a nearest model ({exc})") from None
        return RuntimeInfo(scale=self.scale, in_channels=3, out_channels=3)

    def infer_impl(self, batch):
        return batch.repeat(self.scale, axis=2).repeat(self.scale, axis=3)
'''


def write_plugin(root: Path, dist: str, entry_points: str, package: dict[str, str]) -> Path:
    """A plugin distribution as an installer would leave it: modules + ``*.dist-info``."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[edgesr.backends]\n{entry_points}\n")
    for relative, source in package.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("site"), "edgesr-nearest",
                        "nearest = edgesr_nearest:ENTRY",
                        {"edgesr_nearest/__init__.py": PLUGIN_INIT,
                         "edgesr_nearest/runtime.py": PLUGIN_RUNTIME})


def _edgesr(plugin_dir: Path, cache: Path, *args) -> subprocess.CompletedProcess:
    """``edgesr ARGS`` in a fresh interpreter with the plugin on its PYTHONPATH."""
    path = os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "EDGESR_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "edgesr.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


def test_plugin_backend_in_backends_upscale_compare_and_bench(plugin_dir, tmp_path):
    model = tmp_path / "x2.nearest"
    model.write_text(json.dumps({"scale": 2}))
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")

    listed = _edgesr(plugin_dir, tmp_path / "cache", "backends")
    line = next(x for x in listed.stdout.splitlines() if x.startswith("nearest"))
    assert listed.returncode == 0 and "yes" in line and "[plugin: edgesr-nearest]" in line
    assert listed.stdout.startswith("torch")  # the built-in ones are listed first, as before

    for backend in (("--backend", "nearest"), ()):  # named, and picked by the model's suffix
        out = tmp_path / f"out{len(backend)}.png"
        run = _edgesr(plugin_dir, tmp_path / "cache", "upscale", tmp_path / "in.png", "-m",
                      model, "-o", out, "-q", *backend)
        assert run.returncode == 0, run.stderr
        np.testing.assert_array_equal(np.asarray(Image.open(out)),
                                      pixels.repeat(2, axis=0).repeat(2, axis=1))

    compared = _edgesr(plugin_dir, tmp_path / "cache", "compare", model, "-r", "nearest",
                       "-r", "nearest:fp32", "--size", "16")
    assert compared.returncode == 0, compared.stderr
    assert "nearest vs nearest:fp32" in compared.stdout and "pass" in compared.stdout

    bench = _edgesr(plugin_dir, tmp_path / "cache", "bench", "-m", model, "-b", "nearest",
                    "--tiles", "16", "--runs", "1", "--warmup", "0", "--image-size", "24x24",
                    "--no-isolate", "-o", tmp_path / "report")
    assert bench.returncode == 0, bench.stderr
    cases = json.loads((tmp_path / "report" / "report.json").read_text())["cases"]
    nearest = next(c for c in cases if c["backend"] == "nearest")
    assert nearest["status"] == "ok" and nearest["rows"][0]["tile"] == 16


def test_plugin_entry_loads_lazily_beside_the_built_ins(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    plugins.discover.cache_clear()
    try:
        assert list(entries())[-1] == "nearest" and entry("nearest").plugin == "edgesr-nearest"
        assert "edgesr_nearest.runtime" not in sys.modules  # imported only when it runs
    finally:
        plugins.discover.cache_clear()
        for name in ("edgesr_nearest", "edgesr_nearest.runtime"):
            sys.modules.pop(name, None)


def test_a_broken_plugin_is_one_line_and_the_built_ins_still_work(tmp_path, monkeypatch,
                                                                     capsys):
    site = write_plugin(tmp_path, "edgesr-broken", "broken = edgesr_broken:ENTRY\n"
                        "torch = edgesr_broken:TORCH",
                        {"edgesr_broken.py": "raise ImportError('plugin bug\\nmore')\n"})
    monkeypatch.syspath_prepend(str(site))
    plugins.discover.cache_clear()
    try:
        assert entry("torch").plugin is None  # the built-in, not the plugin that claims it
        assert "broken" not in entries()
        errors = plugin_errors()
        assert errors["broken"] == ("backend 'broken' (plugin from edgesr-broken) failed to "
                                    "load: ImportError: plugin bug")
        assert "\n" not in errors["torch"]
        with pytest.raises(Exception, match="failed to load: ImportError: plugin bug"):
            entry("broken")
        assert "edgesr: backend 'broken' (plugin from edgesr-broken) failed to load" in \
            capsys.readouterr().err
    finally:
        plugins.discover.cache_clear()
        sys.modules.pop("edgesr_broken", None)


def test_the_readme_plugin_example_is_a_valid_entry():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is standard from Python 3.11")
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Writing a backend plugin", 1)[1].split("\n## ", 1)[0]
    toml_block, python_block = (re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)
                                for lang in ("toml", "python"))
    points = tomllib.loads(toml_block)["project"]["entry-points"]["edgesr.backends"]
    namespace: dict = {}
    exec(python_block, namespace)  # noqa: S102 - the README's own example
    entry_ = namespace["ENTRY"]
    assert isinstance(entry_, BackendEntry) and list(points) == [entry_.name] == ["rknn"]
    assert points["rknn"] == "edgesr_rknn:ENTRY" and entry_.artifacts == (".rknn",)
