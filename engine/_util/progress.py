"""One progress bar for every long command (run, eval, bench), on tqdm,
and the live status a run shows before its first record is done.

A bar redraws itself with carriage returns, which only a terminal reads as
one line: in a log file or a CI console every frame stays. When stderr is
not a terminal, progress is therefore written as plain lines, one every
``interval`` seconds and one at the end.

A *live* :class:`Progress` (``aidsafe run``'s) also listens to what the
engine reports from deep inside (:func:`say`: weights being verified, a model
loading and how long it took; :func:`working`: a stage or an LM call in
progress; :func:`lm_call`: an answer's tokens per second). A record of the
embedded model can take minutes, so a run says what it is doing from its
first second: in a log every LM call gets a line until the first record is
done, and a heartbeat line (records done, what is in progress and for how
long, the last tokens/s) comes whenever ``interval`` seconds passed without
one. On a terminal the same goes into the bar. With no live progress (a
library call, ``--quiet``) the reports cost a list lookup and go nowhere.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

#: Seconds between two plain progress lines when stderr is not a terminal
#: (and the longest a live run's log goes without a line).
LOG_INTERVAL = 30.0

#: Seconds between two redraws of a live bar on a terminal (its clock and
#: the running call's seconds move even while no record finishes).
TERMINAL_REFRESH = 1.0


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def library_bars_off_in_logs(stream: TextIO | None = None) -> None:
    """When ``stream`` (default: stderr) is not a terminal, turn off the tqdm
    bars libraries draw themselves (DSPy's optimizers and evaluations).
    tqdm reads its ``TQDM_*`` settings once, when it is first imported, so
    this is called before that; a user's own ``TQDM_DISABLE`` wins."""
    if not is_terminal(stream) and "tqdm" not in sys.modules:
        os.environ.setdefault("TQDM_DISABLE", "1")


# ------------------------------------------------------------------ reports
# Process-wide, not per context: models load and LM calls run in worker
# threads (and in libraries' own pools) that a context variable set by the
# run would not reach.
_LISTENERS: list["Progress"] = []
_LISTENERS_LOCK = threading.Lock()
# What this thread is working on (a stage of a record), so an LM call's
# line can say where it belongs.
_WORK: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("aidsafe_work", default=())
_TOKENS = itertools.count()


def _listeners() -> list["Progress"]:
    return list(_LISTENERS) if _LISTENERS else []


def say(text: str) -> None:
    """Tell every live progress a one-off status (``loading model ...``)."""
    for listener in _listeners():
        listener.say(text)


@contextlib.contextmanager
def working(label: str) -> Iterator[None]:
    """Mark ``label`` (``record r1: stage intents``, ``LM call default``) as in
    progress inside the block; heartbeat lines name it with its seconds.
    Nested blocks read as one path: ``record r1: stage intents > LM call default``."""
    path = _WORK.get() + (label,)
    reset = _WORK.set(path)
    listeners = _listeners()
    token = next(_TOKENS)
    for listener in listeners:
        listener.begin(token, path)
    try:
        yield
    finally:
        for listener in listeners:
            listener.end(token)
        _WORK.reset(reset)


def lm_call(model: str, output_tokens: int, seconds: float, tokens_per_second: float | None = None) -> None:
    """Report a model's answer (not a cache hit): its output tokens and
    generation speed (the backend's own figure where it has one, else tokens
    over wall time)."""
    listeners = _listeners()
    if not listeners:
        return
    if tokens_per_second is None:
        tokens_per_second = output_tokens / seconds if seconds > 0 else None
    where = " > ".join(_WORK.get())
    for listener in listeners:
        listener.lm_call(model, output_tokens, seconds, tokens_per_second, where)


class _Lines:
    """Progress as plain lines: ``desc: done/total unit (pct%), elapsed``."""

    def __init__(self, total: int, unit: str, desc: str, stream: TextIO, interval: float, clock=time.monotonic):
        self.total, self.unit, self.desc, self.stream = total, unit, desc, stream
        self.interval, self.clock = interval, clock
        self.done = 0
        self.started = self.last = self.wrote = clock()
        self._written = -1  # `done` as of the last line, so close() does not repeat it
        self._lock = threading.Lock()

    def update(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = self.clock()
            if now - self.last >= self.interval:
                self.last = now
                self._write(now)

    def line(self, text: str) -> None:
        """Any other line (a live run's status), in the same stream."""
        with self._lock:
            self._emit(text)

    def heartbeat(self, state: str, slack: float = 0.0) -> None:
        """The count and ``state`` when no line came for ``interval`` seconds
        (less ``slack``, the heartbeat's own period, so no gap exceeds ``interval``)."""
        with self._lock:
            now = self.clock()
            if now - self.wrote >= self.interval - slack:
                self.last = now
                self._write(now, state)

    def close(self) -> None:
        with self._lock:
            if self.done != self._written:
                self._write(self.clock())

    def _write(self, now: float, state: str = "") -> None:
        elapsed = now - self.started
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = ""
        if 0 < self.done < self.total:
            left = f", ~{elapsed / self.done * (self.total - self.done):.0f}s left"
        self._emit(f"{self.desc}: {self.done}/{self.total} {self.unit}{share}, {elapsed:.0f}s{left}"
                   + (f"; {state}" if state else ""))
        self._written = self.done

    def _emit(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self.wrote = self.clock()


class Progress:
    """A tqdm bar on a terminal, plain periodic lines elsewhere (a log, CI),
    or nothing when disabled or there is nothing to count.

    ``live``: also show the engine's reports (:func:`say`, :func:`working`,
    :func:`lm_call`) and keep a heartbeat, until :meth:`close`.
    """

    def __init__(self, total: int, enabled: bool = True, unit: str = "rec", desc: str = "aidsafe",
                 stream: TextIO | None = None, interval: float = LOG_INTERVAL, live: bool = False):
        self._bar = None
        self._terminal = False
        self._live = False
        if not (enabled and total):
            return
        stream = sys.stderr if stream is None else stream
        self.desc, self.stream, self.interval = desc, stream, interval
        self._terminal = is_terminal(stream)
        if self._terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, file=stream)
        else:
            self._bar = _Lines(total, unit, desc, stream, interval)
        if live:
            self._start_live()

    # -- counting -----------------------------------------------------------

    def tick(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)
            self._first_done = True

    def close(self) -> None:
        if self._live:
            self._live = False
            with _LISTENERS_LOCK:
                if self in _LISTENERS:
                    _LISTENERS.remove(self)
            self._stop.set()
            self._heart.join(timeout=5)
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- live reports -------------------------------------------------------

    def _start_live(self) -> None:
        self._live = True
        self._first_done = False
        self._lock = threading.Lock()
        self._work: dict[int, tuple[tuple[str, ...], float]] = {}  # token -> (path, started)
        self._speed: dict[str, float] = {}  # model -> tokens/s of its last answer
        self._stop = threading.Event()
        with _LISTENERS_LOCK:
            _LISTENERS.append(self)
        step = max(min(TERMINAL_REFRESH, self.interval / 4), 0.005)
        self._heart = threading.Thread(target=self._heartbeat, args=(step,),
                                       name="aidsafe-progress", daemon=True)
        self._heart.start()

    def say(self, text: str) -> None:
        """A status line now (above the bar on a terminal)."""
        if self._bar is None:
            return
        line = f"{self.desc}: {text}"
        if self._terminal:
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            self._bar.line(line)

    def begin(self, token: int, path: tuple[str, ...]) -> None:
        with self._lock:
            self._work[token] = (path, time.monotonic())

    def end(self, token: int) -> None:
        with self._lock:
            self._work.pop(token, None)

    def lm_call(self, model: str, tokens: int, seconds: float, speed: float | None, where: str) -> None:
        with self._lock:
            if speed is not None:
                self._speed[model] = speed
        rate = f" ({speed:.1f} tok/s)" if speed is not None else ""
        if self._terminal:
            self._bar.set_postfix_str(f"{where or model}: {tokens} tokens{rate}", refresh=True)
        elif not self._first_done:
            # Until a record is done, every answer gets its line: the first
            # record of a local model can take minutes.
            self.say(f"{where + ': ' if where else ''}{model} answered {tokens} tokens in {seconds:.1f}s{rate}")

    def status(self) -> str:
        """What is in progress now and the models' last speeds, for the heartbeat."""
        now = time.monotonic()
        with self._lock:
            paths = list(self._work.values())
            speeds = dict(self._speed)
        # Only the innermost work: a stage whose LM call is running shows as the call.
        prefixes = {path[:i] for path, _ in paths for i in range(1, len(path))}
        leaves = [f"{' > '.join(path)} ({now - started:.0f}s)" for path, started in sorted(paths, key=lambda w: w[1])
                  if path not in prefixes]
        parts = []
        if leaves:
            parts.append("now: " + ", ".join(leaves[:4]) + (f" and {len(leaves) - 4} more" if len(leaves) > 4 else ""))
        if speeds:
            parts.append(", ".join(f"{m} {v:.1f} tok/s" for m, v in sorted(speeds.items())))
        return "; ".join(parts)

    def _heartbeat(self, step: float) -> None:
        while not self._stop.wait(step):
            if self._terminal:
                state = self.status()
                if state:
                    self._bar.set_postfix_str(state, refresh=False)
                self._bar.refresh()
            else:
                self._bar.heartbeat(self.status(), slack=step)
