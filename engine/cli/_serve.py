"""``aidsafe serve``: the embedded model as a local OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import click

from aidsafe.cli._errors import user_errors
from aidsafe.cli._options import cache_options


@click.command("serve")
@click.option("--model", "model_ref", default="default", show_default=True,
              help="default (the embedded default model), qwen-0.5b, qwen-1.5b, smoke (SmolLM2-135M) or a path to a .gguf file.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads (default: auto, the cores free when the model loads).")
@click.option("--context", "n_ctx", default=4096, show_default=True, type=click.IntRange(min=256))
@click.option("--parallel", default=2, show_default=True, type=click.IntRange(min=1), help="Concurrent slots.")
@click.option("--queue", "max_waiting", default=16, show_default=True, type=click.IntRange(min=0),
              help="Requests that may wait for a slot; past that the server answers 503 with Retry-After.")
@click.option("--max-body-mib", default=4.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest request body; a bigger one is answered 413 before it is read.")
@cache_options
@user_errors
def serve_command(model_ref, port, threads, n_ctx, parallel, max_waiting, max_body_mib, cache_dir, no_cache):
    """Serve the embedded model as an OpenAI-compatible server on 127.0.0.1,
    so several processes share one loaded model (use it from a recipe with
    model: openai/NAME and api_base: http://127.0.0.1:PORT/v1)."""
    from aidsafe._util.paths import weights_dir
    from aidsafe.models.local import serve as serve_model

    # serve_model prints "serving ..." once the port is bound and the model loaded.
    serve_model(model_ref, Path(cache_dir) if cache_dir else weights_dir(), port=port, n_threads=threads, n_ctx=n_ctx,
                n_parallel=parallel, max_waiting=max_waiting, max_body_bytes=int(max_body_mib * 1024 * 1024))


__all__ = ["serve_command"]
