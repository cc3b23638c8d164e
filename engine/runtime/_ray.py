"""Records on Ray workers (``aidsafe run --executor ray [--address ADDR]``).

Each worker is a Ray actor that loads the same recipe and compiles the same
program once, then processes the records it is sent. The driver keeps the
journal and the output, so ordering, resume and atomic output work exactly as
with threads. Workers share the cache directory: on a cluster, put it on
storage every node sees (``--cache-dir``), and keep the project at the same
path on every node (or ship it with a Ray runtime_env).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future
from itertools import cycle
from pathlib import Path

from aidsafe._util.errors import UserError


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install -e '.[ray]'") from None
    return ray


class _Worker:
    """The body of a Ray actor: one compiled program, many records."""

    def __init__(self, recipe_path: str, options: dict):
        from aidsafe.runtime._process import RunOptions, prepare

        self.recipe, self.program, self.cache = prepare(recipe_path, RunOptions(**options))

    def process(self, item):
        from aidsafe.runtime._process import process

        return process(item, self.program)


class RayExecutor:
    """Submit records round-robin to ``workers`` Ray actors."""

    def __init__(self, recipe_path: Path, options, workers: int):
        ray = _ray()
        self._started = not ray.is_initialized()
        if self._started:
            # Workers run the driver's interpreter, so they import the same
            # installed `aidsafe` (the engine/ folder is mapped to that name).
            ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True, configure_logging=False)
        # Workers mostly wait on models (threads in the worker do the calls);
        # asking for no CPU keeps small machines from starving the scheduler.
        actor = ray.remote(num_cpus=0)(_Worker)
        worker_options = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
        worker_options.update(progress=False, executor="thread", cache_dir=str(options.cache_dir or _cache_dir()))
        self.actors = [actor.remote(str(recipe_path), worker_options) for _ in range(max(1, workers))]
        self._next = cycle(self.actors)

    def submit(self, item) -> Future:
        return next(self._next).process.remote(item).future()

    def shutdown(self, cancel: bool = False) -> None:
        ray = _ray()
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._started and ray.is_initialized():
            ray.shutdown()  # a Ray we started for this run goes with it
            self._started = False


def _cache_dir():
    from aidsafe._util.paths import default_cache_dir

    return default_cache_dir()
