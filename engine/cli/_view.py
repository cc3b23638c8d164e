"""``aidsafe view``: a local web app to read, compare and review runs."""

from __future__ import annotations

from pathlib import Path

import click

from aidsafe.cli._errors import user_errors


@click.command("view")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--verbose", "-v", is_flag=True, help="Log every request.")
@click.option("--no-blur", is_flag=True,
              help="Start with harmful text shown (prompts, responses, rejected sides, beliefs are blurred by default).")
@user_errors
def view_command(paths, port, open_browser, verbose, no_blur):
    """Read, compare and review runs in the browser: PATHS are JSONL runs
    (out.jsonl, out.scored.jsonl, DPO runs) or compare folders. Serves on
    127.0.0.1 only, offline; review labels go to OUT.review.jsonl next to
    each run (`aidsafe export --reviewed` leaves out the rejected ones)."""
    from aidsafe.view._server import make_server

    server = make_server(list(paths), port=port, quiet=not verbose, blur=not no_blur)
    click.echo(f"aidsafe view: {server.url} (Ctrl-C to stop)", err=True)
    for source in server.RequestHandlerClass.app.sources:
        click.echo(f"  {source.label}: {source.path}", err=True)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.server_close()


__all__ = ["view_command"]
