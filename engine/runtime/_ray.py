"""Records on Ray workers (``aidsafe run --executor ray [--address ADDR]``).

Each worker is a Ray actor that loads the same recipe and compiles the same
program once, then processes the records it is sent. The driver keeps the
journal and the output, so ordering, resume and atomic output work exactly as
with threads. Workers share the cache directory: on a cluster, put it on
storage every node sees (``--cache-dir``), and keep the project at the same
path on every node (or ship it with a Ray runtime_env).

A local Ray that a run starts goes with the run, even when the driver is
killed (``kill -9``, the OOM killer): Ray ties its head processes to the
driver (Linux ``PR_SET_PDEATHSIG``) and workers exit when their raylet does,
but its agents linger for tens of seconds. A watchdog process (:func:`watch`,
in its own session so Ctrl-C does not reach it first) follows the driver's Ray
processes and kills what is left as soon as the driver is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import subprocess
import sys
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
        from aidsafe._util.redact import install_log_redaction
        from aidsafe.runtime._process import RunOptions, prepare

        install_log_redaction()  # a worker process is ours: its logs carry no key either
        self.recipe, self.program, self.cache = prepare(recipe_path, RunOptions(**options), write_behind=False)

    def process(self, item):
        from aidsafe.runtime._process import process

        return process(item, self.program)


class RayExecutor:
    """Submit records round-robin to ``workers`` Ray actors."""

    def __init__(self, recipe_path: Path, options, workers: int):
        ray = _ray()
        self._watchdog: subprocess.Popen | None = None
        self._started = not ray.is_initialized()
        if self._started:
            # Workers run the driver's interpreter, so they import the same
            # installed `aidsafe` (the engine/ folder is mapped to that name).
            local = options.ray_address is None
            self._watchdog = _start_watchdog() if local else None
            with _loopback_only(ray) if local else contextlib.nullcontext():
                ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=False,
                         ignore_reinit_error=True, configure_logging=False,
                         **({"_node_ip_address": LOOPBACK} if local else {}))
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
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.stdin.close()  # the watchdog kills any Ray process left, then exits
            try:
                watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                watchdog.kill()


LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def _loopback_only(ray):
    """A local Ray started in this block listens on 127.0.0.1 only (GCS,
    raylet, workers, the driver's own server). Ray binds its gRPC servers to
    every interface unless the node's address is the loopback one, and it
    turns a given 127.0.0.1 into the machine's address unless it runs as a
    single-machine Ray (as on macOS and Windows): that switch, read by Ray
    and inherited by the processes it starts, is set for the start."""
    from ray._private import ray_constants

    name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    before_env, before_flag = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before_env


def _start_watchdog() -> subprocess.Popen:
    code = f"from aidsafe.runtime._ray import watch; watch({os.getpid()})"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, start_new_session=True)


def _is_ray(process) -> bool:
    try:
        command = " ".join(process.cmdline())
        return process.name() in ("raylet", "gcs_server") or "ray::" in command or "/ray/" in command
    except Exception:  # gone, or not ours to read
        return False


def watch(driver: int, interval: float = 0.5) -> None:
    """The watchdog's body: every ``interval`` seconds note the Ray processes
    among ``driver``'s descendants; when its stdin closes (the driver ended or
    died), kill the ones still running. psutil's ``kill`` checks a process is
    still the one noted, so a reused pid is never hit."""
    import select

    try:
        import psutil
    except ImportError:
        importlib.import_module("ray")  # Ray bundles psutil and puts it on sys.path
        import psutil

    me = os.getpid()
    tracked: dict[int, psutil.Process] = {}
    try:
        parent = psutil.Process(driver)
    except psutil.NoSuchProcess:
        return
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], interval)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # EOF: the driver closed the pipe or died
        try:
            for child in parent.children(recursive=True):
                if child.pid != me and child.pid not in tracked and _is_ray(child):
                    tracked[child.pid] = child
        except psutil.NoSuchProcess:
            break
    for process in tracked.values():
        try:
            process.kill()
        except psutil.Error:
            pass


def _cache_dir():
    from aidsafe._util.paths import default_cache_dir

    return default_cache_dir()
