"""How many CPU threads the embedded model runs on, and how its idle
threads wait (llama.cpp's ``poll``).

llama.cpp's defaults (threads = cores, ``poll`` 50: idle threads busy-wait
for the next batch) are the fastest on an idle machine and collapse on a busy
one: every competing process steals a core from a thread the others spin on.
Measured on a 2-core machine at load 3-5 (0.5B, 128 greedy tokens):
threads 2 / poll 50 gave 2.7-7 tokens/s, threads 1 / poll 0 gave 16-23.
``threads: auto`` (the default) therefore runs on the cores that are free
when the model starts, and ``poll`` defaults to 0 (idle threads sleep).

The choice is made once, when the model loads: llama.cpp's server fixes its
thread pool at start and has no call to change it, so a new choice means a
new server (a reload, and the prompt cache's warm prefixes lost).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["AUTO", "DEFAULT_POLL", "ThreadChoice", "choose_threads", "usable_cores", "current_load"]

AUTO = "auto"

#: llama.cpp's ``poll`` (0-100: how long idle threads busy-wait before they
#: sleep) when a model names none. 0: on a shared machine a spinning thread
#: takes a core another process needs, and the spin saves almost nothing on
#: a 0.5B model's per-token work.
DEFAULT_POLL = 0


@dataclass(frozen=True)
class ThreadChoice:
    """The threads and poll a local model runs with, and why.

    ``setting`` is what the recipe said (``"auto"`` or a number); ``cores`` and
    ``load`` are what ``auto`` saw (``load`` is None for an explicit number).
    It goes into a record's provenance (``provenance.runtime``), never into a
    cache key: threads change the speed, not the answer.
    """

    threads: int
    poll: int
    setting: str | int = AUTO
    cores: int | None = None
    load: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threads": self.threads, "poll": self.poll, "setting": self.setting}
        if self.setting == AUTO:
            out["cores"] = self.cores
            out["load"] = None if self.load is None else round(self.load, 2)
        return out

    def describe(self) -> str:
        """``threads 1, poll 0 (auto: 2 cores, load 1.3)`` for progress lines."""
        why = f" (auto: {self.cores} cores, load {self.load:.1f})" if self.setting == AUTO and self.load is not None else ""
        return f"threads {self.threads}, poll {self.poll}{why}"


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask, which a container
    or ``taskset`` narrows), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _running_now(samples: int = 5, pause: float = 0.02) -> float | None:
    """Runnable tasks on the machine right now besides the caller, averaged
    over a few samples of ``/proc/stat``'s ``procs_running`` (None off Linux).
    The 1-minute load average lags a change by tens of seconds; this does not."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("procs_running "):
                        counts.append(int(line.split()[1]) - 1)  # the reading thread itself
                        break
        except (OSError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(pause)
    return sum(counts) / len(counts) if counts else None


def current_load() -> float:
    """How many cores other work keeps busy: the larger of the 1-minute load
    average and the runnable tasks now. Too few threads cost a little on an
    idle machine; too many cost 3-5x on a busy one, so the larger one wins."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    now = _running_now()
    return max(load, now) if now is not None else load


def choose_threads(setting: str | int | None = AUTO, poll: int | None = None) -> ThreadChoice:
    """The :class:`ThreadChoice` for a model's ``threads`` and ``poll`` settings.

    ``auto`` (or None): the usable cores minus the load rounded half up,
    kept within [1, cores]; a number is taken as it is. ``poll`` defaults to
    :data:`DEFAULT_POLL`.
    """
    poll = DEFAULT_POLL if poll is None else int(poll)
    if poll < 0 or poll > 100:
        raise ValueError(f"poll must be 0-100, got {poll}")
    if setting is None or setting == AUTO:
        cores = usable_cores()
        load = current_load()
        free = cores - int(load + 0.5)
        return ThreadChoice(min(cores, max(1, free)), poll, AUTO, cores, load)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"threads must be 'auto' or a whole number >= 1, got {setting!r}")
    return ThreadChoice(setting, poll, setting)
