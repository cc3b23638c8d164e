"""One progress bar for every long command (run, eval, bench), on tqdm.

A bar redraws itself with carriage returns, which only a terminal reads as
one line: in a log file or a CI console every frame stays. When stderr is
not a terminal, progress is therefore written as plain lines, one every
``interval`` seconds and one at the end."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

#: Seconds between two plain progress lines when stderr is not a terminal.
LOG_INTERVAL = 30.0


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


class _Lines:
    """Progress as plain lines: ``desc: done/total unit (pct%), elapsed``."""

    def __init__(self, total: int, unit: str, desc: str, stream: TextIO, interval: float, clock=time.monotonic):
        self.total, self.unit, self.desc, self.stream = total, unit, desc, stream
        self.interval, self.clock = interval, clock
        self.done = 0
        self.started = self.last = clock()
        self._written = -1  # `done` as of the last line, so close() does not repeat it
        self._lock = threading.Lock()

    def update(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = self.clock()
            if now - self.last >= self.interval:
                self.last = now
                self._write(now)

    def close(self) -> None:
        with self._lock:
            if self.done != self._written:
                self._write(self.clock())

    def _write(self, now: float) -> None:
        elapsed = now - self.started
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = ""
        if 0 < self.done < self.total:
            left = f", ~{elapsed / self.done * (self.total - self.done):.0f}s left"
        self.stream.write(f"{self.desc}: {self.done}/{self.total} {self.unit}{share}, {elapsed:.0f}s{left}\n")
        self.stream.flush()
        self._written = self.done


class Progress:
    """A tqdm bar on a terminal, plain periodic lines elsewhere (a log, CI),
    or nothing when disabled or there is nothing to count."""

    def __init__(self, total: int, enabled: bool = True, unit: str = "rec", desc: str = "aidsafe",
                 stream: TextIO | None = None, interval: float = LOG_INTERVAL):
        self._bar = None
        if not (enabled and total):
            return
        stream = sys.stderr if stream is None else stream
        if is_terminal(stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, file=stream)
        else:
            self._bar = _Lines(total, unit, desc, stream, interval)

    def tick(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
