"""Folder upscales killed with kill -9 at random moments, and concurrent --stream runs into one
folder: never a partial output, and the next run cleans what a killed run left."""

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from faults import count, tally
from PIL import Image

from edgesr.cli import main
from edgesr.imageio import read_image


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(folder / f"p{i}.png")
    return folder


def _command(folder, out, model, *extra):
    return [sys.executable, "-m", "edgesr.cli", "upscale", str(folder), "-o", str(out), "-m",
            str(model), "--tile", "16", "--overlap", "4", *extra]


def _check(out) -> tuple[list[str], list[str]]:
    """(partial or wrong outputs, hidden temporaries) in ``out``."""
    bad, temps = [], []
    for path in out.iterdir() if out.exists() else []:
        if path.name.startswith("."):
            temps.append(path.name)
            continue
        try:
            if read_image(path).pixels.shape != (80, 96, 3):
                bad.append(path.name)
        except Exception:  # noqa: BLE001 - an undecodable output is what is counted
            bad.append(path.name)
    return bad, temps


def test_kill_during_folder_upscale(tmp_path, photos, tiny_x2):
    rounds = count(1, 20)
    rng = random.Random(9)
    partial, temps_after_rerun, left_by_kill, rerun_failed = [], [], 0, 0
    for i in range(rounds):
        out = tmp_path / f"out{i}"
        stream = [] if i % 2 else ["--stream"]
        child = subprocess.Popen(_command(photos, out, tiny_x2, *stream), stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        child.stdout.readline()  # the first image is written: the run is under way
        time.sleep(rng.uniform(0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        bad, temps = _check(out)
        partial += bad
        left_by_kill += len(temps)
        rerun_failed += main(["upscale", str(photos), "-o", str(out), "-m", str(tiny_x2),
                              "--tile", "16", "--overlap", "4", "-q", *stream]) != 0
        bad, temps = _check(out)
        partial += bad
        temps_after_rerun += temps
        assert len(list(out.iterdir())) == 8
    tally("kill-folder-upscale", runs_killed=rounds, partial_outputs=len(partial),
          temporaries_left_by_kills=left_by_kill, temporaries_after_next_run=len(temps_after_rerun),
          reruns_failed=rerun_failed)
    assert not partial and not temps_after_rerun and not rerun_failed


def test_concurrent_streamed_runs_into_one_folder(tmp_path, photos, tiny_x2):
    rounds, per_round = count(1, 10), count(2, 4)
    failed, bad = 0, []
    for i in range(rounds):
        out = tmp_path / f"out{i}"
        runs = [subprocess.Popen(_command(photos, out, tiny_x2, "--stream", "-q"),
                                 stderr=subprocess.PIPE, text=True) for _ in range(per_round)]
        for run in runs:
            failed += run.wait() != 0
            assert "Traceback" not in run.stderr.read()
        broken, temps = _check(out)
        bad += broken + temps
    tally("concurrent-stream", rounds=rounds, runs=per_round * rounds, failed_runs=failed,
          bad_outputs=len(bad))
    assert not failed and not bad, bad
