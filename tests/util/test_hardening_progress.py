"""Issue #14 item 15: progress is plain lines, not carriage-return frames,
when stderr is a log rather than a terminal."""

from __future__ import annotations

import io

import aidsafe
from aidsafe._util.progress import Progress

from ..conftest import MINI


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_plain_lines_and_a_final_count():
    stream = io.StringIO()
    bar = Progress(3, unit="rec", desc="aidsafe", stream=stream, interval=0)
    for _ in range(3):
        bar.tick()
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("aidsafe: 1/3 rec (33%), ")
    assert lines[-1].startswith("aidsafe: 3/3 rec (100%), ")
    assert len(lines) == 3  # the last periodic line already said 3/3: close() does not repeat it


def test_lines_are_periodic_not_per_tick():
    stream = io.StringIO()
    bar = Progress(100, stream=stream, interval=3600)
    for _ in range(100):
        bar.tick()
    bar.close()
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[-1]]  # only the final line
    assert "100/100" in stream.getvalue()


def test_a_terminal_still_gets_the_bar():
    stream = Terminal()
    bar = Progress(2, stream=stream)
    bar.tick(2)
    bar.close()
    assert "\r" in stream.getvalue()


def test_disabled_or_empty_writes_nothing():
    stream = io.StringIO()
    Progress(5, enabled=False, stream=stream).close()
    Progress(0, stream=stream).close()
    assert stream.getvalue() == ""


def test_a_run_logged_to_a_file_has_no_carriage_returns(fake, recipe_file, prompts, tmp_path, capsys):
    fake.rules = [("CRITIC_", {"agree": True})]
    aidsafe.run(recipe_file(MINI), prompts(["a", "b"]), tmp_path / "o.jsonl",
                aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=True))
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "aidsafe: 2/2 rec (100%)" in err


def test_library_bars_are_turned_off_only_for_logs_and_only_before_tqdm_loads(monkeypatch):
    import os
    import sys

    import tqdm  # noqa: F401 - loaded, as in a process that already drew a bar

    from aidsafe._util.progress import library_bars_off_in_logs

    monkeypatch.setenv("TQDM_DISABLE", "")  # so that monkeypatch removes what the test sets
    monkeypatch.delenv("TQDM_DISABLE")
    library_bars_off_in_logs(io.StringIO())  # tqdm read its settings already: nothing to set
    assert "TQDM_DISABLE" not in os.environ
    monkeypatch.delitem(sys.modules, "tqdm")
    library_bars_off_in_logs(Terminal())  # a terminal keeps its bars
    assert "TQDM_DISABLE" not in os.environ
    library_bars_off_in_logs(io.StringIO())
    assert os.environ["TQDM_DISABLE"] == "1"

