"""Issue #28: a run says what it is doing from its first second, in a log
(plain lines, a heartbeat while a slow call runs) and on a terminal."""

from __future__ import annotations

import io
import sys
import threading

import aidsafe
from aidsafe._util import progress
from aidsafe._util.progress import Progress

from ..conftest import MINI, options


class Log(io.StringIO):
    """A non-terminal stderr that notices a given text being written."""

    def __init__(self, needle: str):
        super().__init__()
        self.needle = needle
        self.seen = threading.Event()

    def write(self, text):
        n = super().write(text)
        if self.needle in text:
            self.seen.set()
        return n


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _index(lines, text):
    return next(i for i, line in enumerate(lines) if text in line)


def test_a_log_gets_a_heartbeat_while_a_slow_call_runs(fake, recipe_file, prompts, tmp_path, monkeypatch):
    log = Log("now: record r1: stage initial > LM call default (")
    monkeypatch.setattr(sys, "stderr", log)

    def slow_thinker(call):
        # The call lasts until a heartbeat line has named it: no sleeps, no timing.
        assert log.seen.wait(30), log.getvalue()
        return {"thoughts": ["one"], "response": "answer"}

    fake.rules = [("THINKER", slow_thinker), ("CRITIC_", {"agree": True})]
    aidsafe.run(recipe_file(MINI), prompts(["alpha", "beta"]), tmp_path / "o.jsonl",
                options(tmp_path / "c", progress=True, progress_interval=0.05))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    # first: what the run is about to do
    assert lines[0].startswith("aidsafe: recipe.yaml: 2 record(s) from ") and lines[0].endswith("; preparing models")
    # then every answer of the first record, with its place and speed
    intents = _index(lines, "aidsafe: record r1: stage intents: default answered ")
    assert "tok/s)" in lines[intents]
    # a heartbeat while the slow call runs: records done, what runs and for how long, the last speed
    beat = _index(lines, "now: record r1: stage initial > LM call default (")
    assert lines[beat].startswith("aidsafe: 0/2 rec (0%), ")
    assert "; default " in lines[beat] and lines[beat].endswith(" tok/s")
    thinker = _index(lines, "aidsafe: record r1: stage initial: default answered ")
    done = _index(lines, "aidsafe: 2/2 rec (100%)")
    assert 0 < intents < beat < thinker < done


def test_answer_lines_stop_after_the_first_record():
    log = io.StringIO()
    bar = Progress(2, stream=log, interval=3600, live=True)
    try:
        with progress.working("record r1: stage a"):
            progress.lm_call("default", 10, 2.0)
        bar.tick()
        with progress.working("record r2: stage a"):
            progress.lm_call("default", 10, 2.0)
        bar.tick()
    finally:
        bar.close()
    assert log.getvalue().splitlines() == [
        "aidsafe: record r1: stage a: default answered 10 tokens in 2.0s (5.0 tok/s)",
        log.getvalue().splitlines()[-1],
    ]
    assert log.getvalue().splitlines()[-1].startswith("aidsafe: 2/2 rec (100%)")


def test_reports_go_nowhere_without_a_live_progress():
    log = io.StringIO()
    bar = Progress(2, stream=log, interval=3600)  # not live
    progress.say("loading model x ...")
    with progress.working("stage a"):
        progress.lm_call("default", 10, 1.0, 12.5)
    bar.close()
    assert "loading" not in log.getvalue() and "answered" not in log.getvalue()
    assert progress._LISTENERS == []


def test_a_closed_live_progress_stops_listening():
    bar = Progress(1, stream=io.StringIO(), interval=0.05, live=True)
    assert progress._LISTENERS == [bar]
    bar.close()
    bar.close()  # twice is harmless
    assert progress._LISTENERS == []


def test_a_terminal_shows_status_above_the_bar_and_the_work_in_it():
    term = Log("LM call default (")
    term.isatty = lambda: True
    bar = Progress(1, stream=term, interval=0.05, live=True)
    try:
        progress.say("model tiny loaded in 0.4s")
        with progress.working("record r1: stage a"), progress.working("LM call default"):
            assert term.seen.wait(30)  # the refresh named the running call in the bar
        bar.tick()
    finally:
        bar.close()
    text = term.getvalue()
    assert "aidsafe: model tiny loaded in 0.4s\n" in text
    assert "record r1: stage a > LM call default (" in text
    assert "\r" in text  # still a bar
