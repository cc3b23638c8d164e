"""Run many small model calls (judge verdicts, benchmark answers, optimizer
rollouts) on a thread pool, results in task order."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


def run_tasks(tasks: list[Callable[[], Any]], workers: int = 1, progress: Callable[[], None] | None = None) -> list:
    """Call each of ``tasks`` and return their results in task order.

    With ``workers`` > 1 they run on a thread pool, each in a copy of the
    caller's context (so usage meters set by the caller see their calls);
    ``progress`` is called once after each task. An exception in a task is
    raised here, after the pool has finished.
    """
    def wrap(task):
        def call():
            result = task()
            if progress:
                progress()
            return result
        return call

    if workers <= 1:
        return [wrap(t)() for t in tasks]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aidsafe-judge") as pool:
        futures = [pool.submit(contextvars.copy_context().run, wrap(t)) for t in tasks]
        return [f.result() for f in futures]


__all__ = ["run_tasks"]
