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
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads.")
@click.option("--context", "n_ctx", default=4096, show_default=True, type=click.IntRange(min=256))
@click.option("--parallel", default=2, show_default=True, type=click.IntRange(min=1), help="Concurrent slots.")
@cache_options
@user_errors
def serve_command(model_ref, port, threads, n_ctx, parallel, cache_dir, no_cache):
    """Serve the embedded model as an OpenAI-compatible server on 127.0.0.1,
    so several processes share one loaded model (use it from a recipe with
    model: openai/NAME and api_base: http://127.0.0.1:PORT/v1)."""
    from aidsafe._util.paths import weights_dir
    from aidsafe.models.local import serve as serve_model

    click.echo(f"serving {model_ref} on http://127.0.0.1:{port}/v1 (Ctrl-C to stop)", err=True)
    serve_model(model_ref, Path(cache_dir) if cache_dir else weights_dir(), port=port, n_threads=threads, n_ctx=n_ctx,
                n_parallel=parallel)


__all__ = ["serve_command"]
