"""``pipeline.upscale_file`` under a memory budget: what it needs from its caller."""

from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image
from stub_runtimes import NearestRuntime

from edgesr.errors import EdgesrError
from edgesr.model_memory import ModelMemory
from edgesr.pipeline import plan_outputs, stream_blocker, upscale_file, upscale_many
from edgesr.runtimes.base import RuntimeInfo
from edgesr.upscaler import Upscaler


class FixedShapeRuntime(NearestRuntime):
    """A nearest-neighbour x2 runtime that takes 16 x 16 inputs only."""

    def activate_impl(self) -> RuntimeInfo:
        return RuntimeInfo(scale=self.scale, in_channels=3, out_channels=3, fixed_hw=(16, 16))


@pytest.fixture
def src(tmp_path, rng):
    path = tmp_path / "in.png"
    Image.fromarray((smooth_image(rng, 40, 52) * 255).astype(np.uint8)).save(path)
    return path


def test_fixed_shape_runtime_needs_no_measured_memory(tmp_path, src):
    with FixedShapeRuntime() as runtime:
        out = upscale_file(Upscaler(runtime, overlap=4), src, tmp_path / "out.png",
                           max_memory=64e9)
    assert Image.open(out).size == (104, 80)


def test_dynamic_runtime_needs_measured_memory(tmp_path, src):
    with NearestRuntime() as runtime:
        upscaler = Upscaler(runtime, overlap=4)
        with pytest.raises(EdgesrError, match="measured memory"):
            upscale_file(upscaler, src, tmp_path / "a.png", max_memory=64e9)
        out = upscale_file(upscaler, src, tmp_path / "b.png", max_memory=64e9,
                           model_memory=ModelMemory(bytes_per_pixel=1024, fixed_bytes=0))
    assert Image.open(out).size == (104, 80) and not (tmp_path / "a.png").exists()


def _pngs(folder, *names):
    folder.mkdir(exist_ok=True)
    for name in names:
        Image.new("RGB", (4, 4)).save(folder / name)
    return folder


@pytest.mark.parametrize("output", ["in.png", "./in.png", "sub/../in.png"])
def test_an_input_is_never_its_own_output(tmp_path, src, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(EdgesrError, match="would overwrite the input"):
        plan_outputs(Path("in.png"), Path(output), "x2", None)


def test_a_folder_into_itself_would_replace_its_originals(tmp_path):
    folder = _pngs(tmp_path / "photos", "a.png", "b.png")
    with pytest.raises(EdgesrError, match="would overwrite the input"):
        plan_outputs(folder, folder, "x2", None)
    assert [s.name for s, _ in plan_outputs(folder, folder, "x2", ".jpg")] == ["a.png", "b.png"]


def test_two_inputs_onto_one_output_are_refused(tmp_path):
    folder = _pngs(tmp_path / "photos", "a.png")
    Image.new("RGB", (4, 4)).save(folder / "a.jpg")
    with pytest.raises(EdgesrError, match="a.jpg and .*a.png would both be written to"):
        plan_outputs(folder, tmp_path / "out", "x2", "png")


@pytest.mark.parametrize("ext", ["/../../x.png", "../x.png", ".p/ng", "", ".", ".png/"])
def test_ext_is_an_extension_only(tmp_path, ext):
    folder = _pngs(tmp_path / "photos", "a.png")
    with pytest.raises(EdgesrError, match="--ext"):
        plan_outputs(folder, tmp_path / "out", "x2", ext)


def test_a_run_cleans_what_killed_runs_left_in_its_output_folder(tmp_path, src):
    import os
    import subprocess
    import sys

    from edgesr.fsutil import temp_path

    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = temp_path(out / "in.png")
    stale = stale.with_name(stale.name.replace(f".{os.getpid()}-", f".{dead}-"))
    stale.write_bytes(b"half a PNG")
    live = temp_path(out / "other.png")  # a writer of this process, still at work
    live.write_bytes(b"in progress")
    with NearestRuntime() as runtime:
        results = upscale_many(Upscaler(runtime), [(src, out / "in.png")], lambda r: None)
    assert results[0].error is None
    assert sorted(p.name for p in out.iterdir()) == sorted(["in.png", live.name])


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_to_the_input_is_the_input(tmp_path, src, link):
    out = tmp_path / "out.png"
    out.symlink_to(src) if link == "symlink" else out.hardlink_to(src)
    with pytest.raises(EdgesrError, match="would overwrite the input"):
        plan_outputs(src, out, "x2", None)


@pytest.mark.parametrize("target, outscale, why", [
    ("o.png", None, None), ("o.TIF", None, None), ("o.tiff", 2.0, None),
    ("o.jpg", None, "JPG output is encoded from the whole image"),
    ("o.webp", None, "WEBP output"), ("o.png", 3.0, "--outscale resizes the whole image")])
def test_stream_blocker(target, outscale, why):
    with NearestRuntime(scale=2) as runtime:
        blocker = stream_blocker(Upscaler(runtime), Path(target), 10, 12, outscale)
    assert blocker == why if why is None else why in blocker


def test_upscale_file_streams_only_when_asked_and_it_can(tmp_path, src):
    notes = []
    with NearestRuntime(scale=2) as runtime:
        upscaler = Upscaler(runtime, tile=16, overlap=4)
        upscale_file(upscaler, src, tmp_path / "a.jpg", on_whole_image=lambda *a: notes.append(a))
        upscale_file(upscaler, src, tmp_path / "b.jpg", stream=False,
                     on_whole_image=lambda *a: notes.append(a))
        with pytest.raises(EdgesrError, match="--stream writes PNG or TIFF"):
            upscale_file(upscaler, src, tmp_path / "c.jpg", stream=True)
        (results,) = upscale_many(upscaler, [(src, tmp_path / "d.png")], lambda r: None)
    (source, why, need), = notes  # said once: stream=False asked for no note
    assert source == src and "JPG" in why and need > 52 * 40 * 2 * 2 * 3 * 4
    assert results.streamed and results.size_in == (52, 40) and results.size_out == (104, 80)


@pytest.mark.parametrize("suffix, single, in_folder", [
    (None, "in_x2.png", "in.png"), ("out", "in_out.png", "in_out.png"), ("", None, "in.png")])
def test_suffix_names_the_outputs_edgesr_names(tmp_path, src, suffix, single, in_folder):
    if single is None:
        with pytest.raises(EdgesrError, match="would overwrite the input"):
            plan_outputs(src, None, "x2", None, suffix)
    else:
        assert plan_outputs(src, None, "x2", None, suffix) == [(src, tmp_path / single)]
    out = tmp_path / "out"
    out.mkdir()
    assert plan_outputs(src, out, "x2", ".webp", suffix) == \
        [(src, out / in_folder.replace(".png", ".webp"))]
    assert plan_outputs(tmp_path, None, "x2", None, suffix)[0][1] == \
        tmp_path.with_name(f"{tmp_path.name}_x2") / in_folder
