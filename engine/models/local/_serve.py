"""The shared HTTP server: :func:`serve` exposes a local model over llama.cpp's
OpenAI-compatible API so several processes can share one loaded model."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from aidsafe._util.errors import ModelError
from aidsafe.models.local._engine import PROMPT_CACHE_MIB, _make_params, _start_server
from aidsafe.models.local._weights import resolve_local

__all__ = ["serve"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def serve(
    ref: str,
    cache_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_threads: int | None = None,
    n_ctx: int = 4096,
    n_parallel: int = 2,
    *,
    allow_remote: bool = False,
    api_key: str | None = None,
    repeat_penalty: float = 1.1,
    seed: int = 0,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve a local model over llama.cpp's OpenAI-compatible HTTP API.

    Several processes then share one loaded model, e.g. with
    ``dspy.LM("openai/<name>", api_base="http://127.0.0.1:8080/v1", api_key="x")``.
    Listens on loopback only unless ``allow_remote=True`` (there is no
    authentication unless ``api_key`` is given). Blocks until Ctrl-C (or
    until ``stop`` is set, for embedding); ``ready`` is set once listening.
    Note that, unlike :class:`LlamaCppEngine`, the server applies
    ``repeat_penalty`` only as the default for requests that do not set one.
    """
    if host not in _LOOPBACK and not allow_remote:
        raise ModelError(
            f"refusing to serve on {host}: the server has no authentication and would expose the model "
            "to the network; use 127.0.0.1, or pass allow_remote=True (and an api_key) on purpose"
        )
    model = resolve_local(ref, cache_dir)
    params = _make_params(
        model, n_threads=n_threads, n_ctx=n_ctx, n_parallel=n_parallel, repeat_penalty=repeat_penalty,
        seed=seed, host=host, port=port, api_key=api_key, http_threads=max(2, n_parallel + 1),
        prompt_ram_cache_mib=PROMPT_CACHE_MIB,
    )
    server = _start_server(params, model)
    print(f"serving {model.name} (sha256 {model.sha256[:12]}) at {server.listening_address}/v1 "
          f"with {n_parallel} slot(s); Ctrl-C to stop", flush=True)
    if ready is not None:
        ready.set()
    # SIGTERM (service managers, `kill`) should stop as cleanly as Ctrl-C.
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        while True:
            if stop is None:
                time.sleep(0.5)
            elif stop.wait(0.5):
                break
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        del server  # the native destructor stops the loop and joins its threads


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
