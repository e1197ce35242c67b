"""End-to-end runs of the ``edgesr`` command on tiny checkpoints and synthetic images."""

import json
import os
import subprocess
import sys

import numpy as np
import psutil
import pytest
import torch
from conftest import smooth_image
from PIL import Image
from tiny_models import make_tiny

from edgesr.cli import main
from edgesr.model_memory import measure_model_memory


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "tiny_x2.pth"
    torch.save({"params": make_tiny("compact_x2").state_dict()}, path)
    return path


def _write_png(path, rng, h=20, w=24):
    Image.fromarray((smooth_image(rng, h, w) * 255).astype(np.uint8)).save(path)
    return path


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("upscale", "export", "info", "models"):
        assert command in out


def test_upscale_file(tmp_path, checkpoint, rng):
    src = _write_png(tmp_path / "in.png", rng)
    dst = tmp_path / "out" / "in_x2.png"
    assert main(["upscale", str(src), "-o", str(dst), "-m", str(checkpoint), "--tile", "16",
                 "--overlap", "4", "-q"]) == 0
    assert Image.open(dst).size == (48, 40)


def test_upscale_outscale(tmp_path, checkpoint, rng):
    src = _write_png(tmp_path / "in.png", rng)
    dst = tmp_path / "in_x3.png"
    assert main(["upscale", str(src), "-o", str(dst), "-m", str(checkpoint), "-s", "3", "-q"]) == 0
    assert Image.open(dst).size == (72, 60)


def test_folder_run_reports_bad_file_and_carries_on(tmp_path, checkpoint, rng, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    _write_png(folder / "a.png", rng)
    _write_png(folder / "c.png", rng)
    (folder / "b.png").write_text("this is not an image")
    out = tmp_path / "out"
    code = main(["upscale", str(folder), "-o", str(out), "-m", str(checkpoint), "-q"])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    err = capsys.readouterr().err
    assert "b.png" in err and "1 of 3 images failed" in err


def test_onnxruntime_backend_on_checkpoint(tmp_path, checkpoint, rng, monkeypatch):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    src = _write_png(tmp_path / "in.png", rng)
    ref, ort = tmp_path / "ref.png", tmp_path / "ort.png"
    assert main(["upscale", str(src), "-o", str(ref), "-m", str(checkpoint), "-q"]) == 0
    assert main(["upscale", str(src), "-o", str(ort), "-m", str(checkpoint), "-q",
                 "--backend", "onnxruntime"]) == 0
    a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in (ref, ort))
    assert np.abs(a - b).max() <= 1
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx"))


def test_export_then_upscale_with_onnx(tmp_path, checkpoint, rng, capsys):
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", str(checkpoint), "-o", str(onnx_path)]) == 0
    assert "max abs diff" in capsys.readouterr().out
    src = _write_png(tmp_path / "in.png", rng)
    dst = tmp_path / "out.png"
    assert main(["upscale", str(src), "-o", str(dst), "-m", str(onnx_path), "-q"]) == 0
    assert Image.open(dst).size == (48, 40)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t, c, s: ["upscale", str(s), "-o", str(t / "o.png"), "-m", str(t / "nope.pth")],
         "not found"),
        (lambda t, c, s: ["upscale", str(t / "missing.png"), "-o", str(t / "o.png"), "-m", str(c)],
         "missing.png"),
        (lambda t, c, s: ["upscale", str(s), "-o", str(t / "o.png"), "-m", str(c), "-b", "nope"],
         "unknown backend"),
        (lambda t, c, s: ["upscale", str(s), "-o", str(t / "o.xyz"), "-m", str(c)], "o.xyz"),
    ],
    ids=["missing-model", "missing-input", "unknown-backend", "unknown-output-format"],
)
def test_bad_input_gives_one_line_and_no_file(tmp_path, checkpoint, rng, capsys, make_args,
                                              message):
    src = _write_png(tmp_path / "in.png", rng)
    before = set(tmp_path.iterdir())
    assert main(make_args(tmp_path, checkpoint, src)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgesr: error:") and message in err
    assert len(err.splitlines()) == 1
    assert set(tmp_path.iterdir()) == before


def test_corrupt_checkpoint(tmp_path, rng, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x04garbage")
    src = _write_png(tmp_path / "in.png", rng)
    assert main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", str(bad)]) == 1
    assert "bad.pth" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_info(checkpoint, capsys):
    assert main(["info", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "SRVGGNetCompact x2" in out and "sha256" in out


def test_stream_and_max_memory_match_plain_run(tmp_path, checkpoint, rng, monkeypatch):
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    src = _write_png(tmp_path / "in.png", rng, h=40, w=52)
    plain, streamed = tmp_path / "plain.png", tmp_path / "streamed.png"
    common = ["-m", str(checkpoint), "--tile", "16", "--overlap", "4", "-q"]
    assert main(["upscale", str(src), "-o", str(plain), *common]) == 0
    assert main(["upscale", str(src), "-o", str(streamed), "--stream", *common]) == 0
    assert np.array_equal(np.asarray(Image.open(plain)), np.asarray(Image.open(streamed)))
    budget, in_use = tmp_path / "budget.png", psutil.Process().memory_info().rss
    assert main(["upscale", str(src), "-o", str(budget), "--max-memory", str(in_use + 10**9),
                 "-m", str(checkpoint), "-q"]) == 0
    assert Image.open(budget).size == (104, 80)


def test_stream_refuses_what_it_cannot_write(tmp_path, checkpoint, rng, capsys):
    src = _write_png(tmp_path / "in.png", rng)
    code = main(["upscale", str(src), "-o", str(tmp_path / "o.jpg"), "--stream", "-m",
                 str(checkpoint), "-q"])
    assert code == 1 and "--stream writes PNG" in capsys.readouterr().err
    assert not (tmp_path / "o.jpg").exists()
    assert main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "--max-memory", "lots",
                 "-m", str(checkpoint)]) == 1
    assert "not a memory size" in capsys.readouterr().err


# Runs ``edgesr upscale ARGS --max-memory (RSS now + MARGIN MiB)`` in a process of its own and
# prints its exit code, the budget, its own peak RSS (VmHWM) and the tiles auto_tile chose.
# torch, which the runs use, is imported first: the margin is on top of it (edgesr itself no
# longer imports it).
_BUDGET_RUN = """
import json, sys
import psutil
import torch
import edgesr.pipeline as pipeline
from edgesr.cli import main
from edgesr.profiling.timing import own_peak_rss_mb

tiles, plan = [], pipeline.auto_tile
pipeline.auto_tile = lambda *a, **k: tiles.append(plan(*a, **k)) or tiles[-1]
budget = psutil.Process().memory_info().rss + float(sys.argv[1]) * 2**20
code = main(["upscale", *sys.argv[2:], "--max-memory", str(int(budget)), "-q"])
print(json.dumps({"code": code, "budget": budget / 2**20, "peak": own_peak_rss_mb(),
                  "tiles": tiles}))
"""


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    """(checkpoint, cache) of the tiny x4 RRDB, whose activations (about 4.7 KB per input pixel
    on torch, measured into the cache here, and run on torch) make the tile size matter."""
    folder = tmp_path_factory.mktemp("budget")
    path = folder / "rrdb_x4.pth"
    torch.save({"params": make_tiny("rrdb_x4").state_dict()}, path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGESR_CACHE", str(folder / "cache"))
        measure_model_memory(path, "torch")
    return path, folder / "cache"


def _budget_run(heavy, margin_mb: float, src, dst, *args: str) -> dict:
    checkpoint, cache = heavy
    done = subprocess.run([sys.executable, "-c", _BUDGET_RUN, str(margin_mb), str(src), "-o",
                           str(dst), "-m", str(checkpoint), "-b", "torch", "--overlap", "8",
                           *args],
                          capture_output=True, text=True, cwd=src.parent,
                          env={**os.environ, "EDGESR_CACHE": str(cache)})
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.splitlines()[-1]), "stderr": done.stderr}


@pytest.mark.parametrize("stream, size, margins", [(True, 384, (70, 130)),
                                                   (False, 256, (110, 170))],
                         ids=["stream", "whole-image"])
def test_max_memory_holds_the_process_peak(tmp_path, heavy, rng, stream, size, margins):
    src = _write_png(tmp_path / "in.png", rng, size, size)
    runs = [_budget_run(heavy, margin, src, tmp_path / f"out{margin}.png",
                        "--stream" if stream else "--no-stream") for margin in margins]
    for run in runs:
        assert run["code"] == 0, run["stderr"]
        assert run["peak"] <= run["budget"], run  # no tolerance needed
        assert "measuring" not in run["stderr"]  # measured once, by the fixture
    small, big = (run["tiles"][0] for run in runs)
    assert 32 <= small < big
    assert Image.open(tmp_path / f"out{margins[0]}.png").size == (4 * size, 4 * size)


def test_max_memory_too_small_for_the_whole_image_suggests_stream(tmp_path, heavy, rng):
    src = _write_png(tmp_path / "in.png", rng, 768, 768)
    run = _budget_run(heavy, 100, src, tmp_path / "out.png", "--no-stream")
    assert run["code"] == 1 and run["tiles"] == []
    assert "too small to hold the whole 3072x3072 output" in run["stderr"]
    assert "streamed (PNG or TIFF at the model's scale, without --no-stream) it fits" \
        in run["stderr"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


@pytest.mark.parametrize("extra", [[], ["--stream"]])
def test_upscale_onto_its_input_keeps_the_original(tmp_path, checkpoint, rng, capsys, extra,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = _write_png(tmp_path / "a.png", rng)
    original = src.read_bytes()
    assert main(["upscale", "a.png", "-o", "./a.png", "-m", str(checkpoint), "-q", *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgesr: error:") and "would overwrite the input" in err
    assert src.read_bytes() == original and sorted(os.listdir(tmp_path)) == ["a.png",
                                                                              checkpoint.name]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_nan_weights_fail_with_the_tile_and_write_nothing(tmp_path, rng, capsys, monkeypatch,
                                                           backend):
    pytest.importorskip(backend)
    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    state = make_tiny("compact_x2").state_dict()
    next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    model = tmp_path / "nan.pth"
    torch.save(state, model)
    if backend != "torch":  # the checkpoint's own export fails its parity check: export as is
        from edgesr.export.onnx_export import export_onnx
        from edgesr.models import model_from_state_dict

        model = export_onnx(model_from_state_dict(state), tmp_path / "nan.onnx", check=False).path
    src = _write_png(tmp_path / "in.png", rng)
    assert main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", str(model), "-b",
                 backend, "-q", "--tile", "16", "--overlap", "4"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgesr: error:") and "NaN" in err and "x=0, y=0" in err
    assert not (tmp_path / "o.png").exists()


def test_folder_run_lists_too_big_and_unreadable_entries_and_carries_on(tmp_path, checkpoint,
                                                                        rng, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _write_png(folder / "a.png", rng)
    _write_png(folder / "big.png", rng, h=40, w=40)
    os.mkfifo(folder / "fifo.png")
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    code = main(["upscale", str(folder), "-o", str(tmp_path / "out"), "-m", str(checkpoint), "-q",
                 "--max-input-pixels", "1000"])
    err = capsys.readouterr().err
    assert code == 1 and "3 of 4 images failed" in err
    assert "big.png: 40x40 gives 1600 input pixels, over the limit 1000" in err
    assert "fifo.png: not a regular file" in err and "dangling.png: file not found" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]


def test_max_memory_measures_the_precision_and_device_that_run(tmp_path, checkpoint, rng,
                                                               monkeypatch):
    """--max-memory measures the runtime as opened: --precision and --device included."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    import edgesr.model_memory as model_memory

    monkeypatch.setenv("EDGESR_CACHE", str(tmp_path / "cache"))
    seen = []

    def measured(model_path, backend, options=None, *, multiple=1):
        seen.append((backend, dict(options or {})))
        return model_memory.ModelMemory(bytes_per_pixel=1e3, fixed_bytes=0, largest_tile=None)

    monkeypatch.setattr(model_memory, "measure_model_memory", measured)
    src = _write_png(tmp_path / "in.png", rng)
    assert main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", str(checkpoint),
                 "-b", "openvino", "--precision", "bf16", "--device", "CPU",
                 "--max-memory", "8G", "-q"]) == 0
    assert seen == [("openvino", {"precision": "bf16", "device": "CPU"})]
