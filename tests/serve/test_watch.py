"""edgesr watch: each good image done exactly once across a restart; slow and bad files."""

import threading
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from serve.helpers import png_bytes

from edgesr.errors import EdgesrError
from edgesr.serve.watch import MANIFEST, Watcher


def _watch(session, source, target, results, **kwargs):
    """A watcher running in a thread; returns (thread, stop event)."""
    stop = threading.Event()
    watcher = Watcher(session, source, target, settle_s=1.0, poll_s=0.05,
                      on_result=results.append, **kwargs)
    thread = threading.Thread(target=watcher.run, kwargs={"stop": stop}, daemon=True)
    thread.start()
    return thread, stop


def _until(condition, what: str) -> None:
    for _ in range(1200):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def test_every_good_file_done_once_across_a_restart(tmp_path, session):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    results = []
    for i in range(2):
        (inbox / f"early{i}.png").write_bytes(png_bytes(seed=i))
    (inbox / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    thread, stop = _watch(session, inbox, out, results)
    _until(lambda: len(results) == 3, "the first three files handled")
    stop.set()
    thread.join(60)

    # Files land while no watcher runs, and one arrives slowly after the restart.
    (inbox / "while_down.png").write_bytes(png_bytes(seed=5))
    thread, stop = _watch(session, inbox, out, results)
    slow = png_bytes(30, 26, seed=9)
    with open(inbox / "slow.png", "wb") as fh:
        for start in range(0, len(slow), 400):
            fh.write(slow[start:start + 400])
            fh.flush()
            time.sleep(0.1)
    _until(lambda: (out / "slow.png").is_file() and len(results) == 5, "all files handled")
    stop.set()
    thread.join(60)

    handled = Counter(r.source.name for r in results)
    good = {"early0.png", "early1.png", "while_down.png", "slow.png"}
    assert all(handled[name] == 1 for name in good), handled
    assert handled["broken.jpg"] == 1  # not retried after the restart: it did not change
    for name in good:
        source = np.asarray(Image.open(inbox / name).convert("RGB"))
        assert np.array_equal(np.asarray(Image.open(out / name)), session.upscale(source))
    failed = [r for r in results if r.error]
    assert [r.source.name for r in failed] == ["broken.jpg"] and "\n" not in failed[0].error
    assert not (out / "broken.jpg").exists()
    manifest = (out / MANIFEST).read_text()
    assert '"broken.jpg"' in manifest and '"slow.png"' in manifest
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*good, MANIFEST, ".edgesr-watch.lock"])


def test_once_handles_what_is_there_and_a_changed_file_again(tmp_path, session):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / "a.png").write_bytes(png_bytes(seed=1))
    results = []
    run = lambda: Watcher(session, inbox, out, ext="webp", settle_s=0.2, poll_s=0.05,  # noqa: E731
                          on_result=results.append).run(once=True)
    run()
    run()  # nothing new: nothing done
    assert [r.target.name for r in results] == ["a.webp"]
    (inbox / "a.png").write_bytes(png_bytes(24, 24, seed=2))
    run()
    assert len(results) == 2 and Image.open(out / "a.webp").size == (48, 48)


def test_output_folder_must_differ(tmp_path, session):
    with pytest.raises(EdgesrError, match="must differ"):
        Watcher(session, tmp_path, tmp_path)


def test_cli_once_lists_skipped_files(tmp_path, tiny_checkpoint_x2, capsys):
    from edgesr.cli import main

    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "ok.png").write_bytes(png_bytes())
    (inbox / "bad.png").write_bytes(b"garbage")
    argv = ["watch", str(inbox), str(tmp_path / "out"), "--once", "--settle", "0", "-m",
            str(tiny_checkpoint_x2), "--backend", "torch", "--tile", "16", "--overlap", "4"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "1 file(s) skipped" in err and "bad.png:" in err
    assert Image.open(tmp_path / "out" / "ok.png").size == (56, 40)
    assert main(argv) == 0  # second run: nothing new, nothing failed anew
