"""``--json`` on backends and bench: one JSON document on stdout, the human text on stderr."""

import json

import pytest
import torch
from tiny_models import make_tiny

from edgesr.cli import main
from edgesr.profiling.report import load_report


def test_backends_json_lists_every_backend_with_what_it_builds(capsys):
    assert main(["backends"]) == 0
    table = capsys.readouterr().out
    assert main(["backends", "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    names = [row["name"] for row in rows]
    assert names == [line.split()[0] for line in table.splitlines()]
    by_name = {row["name"]: row for row in rows}
    assert by_name["torch"]["available"] is True and by_name["torch"]["engine"] is None
    assert by_name["openvino"]["engine"]["takes"] == ["tile", "device"]
    assert by_name["tensorrt"]["engine"]["artifact"] == "model.plan"


def test_bench_json_prints_the_report_and_the_table_on_stderr(tmp_path, capfd):
    checkpoint = tmp_path / "compact_x2.pth"
    torch.save({"params_ema": make_tiny("compact_x2").state_dict()}, checkpoint)
    args = ["bench", "-m", str(checkpoint), "-b", "torch", "--tiles", "8", "--runs", "1",
            "--warmup", "0", "--image-size", "16x16", "--no-isolate", "--json",
            "-o", str(tmp_path / "a")]
    assert main(args) == 0
    captured = capfd.readouterr()
    report = json.loads(captured.out)
    assert report == load_report(tmp_path / "a" / "report.json")
    assert report["cases"][0]["backend"] == "torch" and report["cases"][0]["status"] == "ok"
    assert "wrote" in captured.err and "torch" in captured.err


def test_bench_compare_with_json_is_one_error(tmp_path, capsys):
    assert main(["bench", "--compare", "a.json", "b.json", "--json"]) == 1
    err = capsys.readouterr().err
    assert "drop --json" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["info", "backends", "build", "bench"])
def test_commands_take_json(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--json" in capsys.readouterr().out
