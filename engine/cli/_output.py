"""How commands print results: Markdown tables to stdout; summaries, file
locations and warnings to stderr (so ``aidsafe eval out.jsonl > scores.md``
keeps a clean table); optional HTML report and JSON summary files."""

from __future__ import annotations

import json
from pathlib import Path

import click


def check_outputs(reads, **outputs: Path | None) -> None:
    """Refuse, before any work, an output (``--report``, ``--json``, ...;
    keyword: option name) that is one of the files the command ``reads``."""
    from aidsafe._util.paths import refuse_overwrite

    for option, path in outputs.items():
        if path is not None:
            refuse_overwrite(path, reads, f"--{option.replace('_', '-')}")


def write_json_summary(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON to ``path`` and say so on stderr."""
    from aidsafe._util.atomic import atomic_write

    with atomic_write(path) as handle:
        handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    click.echo(f"summary written to {path}", err=True)


def emit_result(result, title: str, report_path: Path | None, json_path: Path | None, meta: dict) -> None:
    """Print ``result``'s tables (Markdown, stdout) and lines (stderr); write
    the HTML report and the JSON summary when asked. ``result`` has
    ``tables()``, ``charts()``, ``lines()`` and ``to_dict()``."""
    from aidsafe.evaluation._report import to_markdown, write_html

    tables = result.tables()
    click.echo(to_markdown(tables))
    for line in result.lines():
        click.echo(line, err=True)
    if report_path:
        write_html(report_path, title, tables, result.charts(), meta)
        click.echo(f"report written to {report_path}", err=True)
    if json_path:
        write_json_summary(json_path, result.to_dict())


__all__ = ["check_outputs", "emit_result", "write_json_summary"]
