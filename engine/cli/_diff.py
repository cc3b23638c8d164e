"""``aidsafe diff``: a semantic diff of two recipes (after ``extends``), with
the stage caches the change invalidates, or of two run outputs. Thin:
:func:`aidsafe.tools.diff_recipes` and :func:`aidsafe.tools.diff_runs` do
the work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from aidsafe.cli._errors import user_errors

RUN_SUFFIXES = (".jsonl", ".ndjson")


def detect_mode(a: str, b: str) -> str:
    """``runs`` when both paths are JSONL outputs, ``recipes`` when neither
    is (YAML files or recipe names); a mix is a usage error."""
    runs = [Path(p).suffix.lower() in RUN_SUFFIXES for p in (a, b)]
    if all(runs):
        return "runs"
    if not any(runs):
        return "recipes"
    raise click.UsageError(f"cannot diff a run output with a recipe ({a}, {b}); give two recipes "
                           "(.yaml) or two run outputs (.jsonl, or any files with --runs)")


@click.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--runs", "mode", flag_value="runs",
              help="Compare two run outputs (default when both files end in .jsonl).")
@click.option("--recipes", "mode", flag_value="recipes",
              help="Compare two recipes (default for .yaml files and recipe names).")
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON.")
@click.option("--records", "max_records", type=click.IntRange(min=0), default=20, show_default=True,
              help="Run diffs: how many changed records to list one by one (the JSON lists all).")
@click.option("--exit-code", is_flag=True, help="Exit 1 when A and B differ, 0 when they do not (like git diff).")
@user_errors
def diff_command(a, b, mode, as_json, max_records, exit_code):
    """Compare A and B: two recipes (stages added, removed or reordered,
    stop criteria, filters, agents' instructions, models, policies, and which
    stage caches B cannot reuse from A), or two outputs of `aidsafe run`
    (records matched by id: statuses, stop reasons, rounds, CoT length,
    refusal/compliance flips, judge scores). Exits 0 whether or not they
    differ, unless --exit-code."""
    mode = mode or detect_mode(a, b)
    if mode == "runs":
        from aidsafe.tools._diff_runs import diff_runs, render_run_diff

        result = diff_runs(a, b)
        text = render_run_diff(result, max_records=max_records)
    else:
        from aidsafe.config._recipe import load_recipe
        from aidsafe.tools._diff_recipes import diff_recipes, render_recipe_diff

        result = diff_recipes(load_recipe(a), load_recipe(b))
        text = render_recipe_diff(result)
    click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if as_json else text)
    if exit_code and not result.same:
        sys.exit(1)


__all__ = ["detect_mode", "diff_command"]
