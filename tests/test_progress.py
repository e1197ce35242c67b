"""Progress: plain lines off a terminal, a tqdm bar on one."""

import io

from edgesr.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_one_plain_line_per_tenth():
    stream = io.StringIO()
    with Progress(25, unit="tile", stream=stream) as bar:
        for _ in range(25):
            bar.update()
        bar.write("a line")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "edgesr: tiles 3/25 (10%)" and lines[9] == "edgesr: tiles 25/25 (100%)"
    assert len(lines) == 11 and lines[-1] == "a line"
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_a_big_step_prints_one_line_and_disabled_prints_only_written_lines():
    stream = io.StringIO()
    bar = Progress(4, unit="img", desc="images", stream=stream)
    bar.update(3)
    bar.update()
    assert stream.getvalue().splitlines() == ["edgesr: images 3/4 (70%)",
                                              "edgesr: images 4/4 (100%)"]
    quiet = io.StringIO()
    with Progress(4, unit="img", enabled=False, stream=quiet) as bar:
        bar.update(4)
        bar.write("done")
    assert quiet.getvalue() == "done\n"


def test_on_a_terminal_a_bar():
    stream = _Terminal()
    with Progress(3, unit="tile", stream=stream) as bar:
        bar.update(3)
    assert "\r" in stream.getvalue() and "3/3" in stream.getvalue()
