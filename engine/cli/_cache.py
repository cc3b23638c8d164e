"""``aidsafe cache``: inspect and manage the content-addressed cache
(``stats``, ``clear``, ``explain``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from aidsafe.cli._errors import user_errors
from aidsafe.cli._options import cache_options, model_overrides


def parse_duration(text: str) -> float:
    """Seconds in ``30m``, ``12h``, ``7d``, ``2w`` or ``90`` (seconds); a bad
    value is a :class:`click.BadParameter` showing the expected form."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip())
    if not match:
        raise click.BadParameter(f"{text!r}: expected a duration such as 30m, 12h, 7d")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


def _open_cache(cache_dir: Path | None):
    from aidsafe._util.paths import default_cache_dir
    from aidsafe.store._cache import Cache

    return Cache(cache_dir or default_cache_dir())


@click.group("cache")
def cache_group():
    """Inspect and manage the content-addressed cache."""


@cache_group.command("stats")
@cache_options
@user_errors
def cache_stats(cache_dir, no_cache):
    """Entries and size per section, and the last run's hits and misses."""
    stats = _open_cache(cache_dir).stats()
    click.echo(f"cache directory: {stats['directory']}")
    for name, s in stats["sections"].items():
        click.echo(f"  {name:<7} {s['entries']:>8} entries  {s['bytes'] / 1e6:>9.2f} MB")
    last = stats.get("last_run")
    if not last:
        click.echo("no run recorded yet")
        return
    counters = last.get("counters", {})
    calls = counters.get("call_hits", 0) + counters.get("call_misses", 0)
    stages = counters.get("stage_hits", 0) + counters.get("stage_misses", 0)
    click.echo(f"last run ({last.get('recipe')}, {last.get('total')} records, {last.get('seconds')}s):")
    click.echo(f"  LM calls: {counters.get('call_hits', 0)} hits / {calls} lookups"
               + (f" ({100 * counters.get('call_hits', 0) / calls:.0f}%)" if calls else ""))
    click.echo(f"  stages:   {counters.get('stage_hits', 0)} hits / {stages} lookups"
               + (f" ({100 * counters.get('stage_hits', 0) / stages:.0f}%)" if stages else ""))
    if counters.get("dropped_corrupt"):
        click.echo(f"  corrupt entries dropped: {counters['dropped_corrupt']}")


@cache_group.command("clear")
@click.option("--stage", help="Only entries of this stage id.")
@click.option("--older-than", help="Only entries older than this (e.g. 30m, 12h, 7d).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@cache_options
@user_errors
def cache_clear(stage, older_than, yes, cache_dir, no_cache):
    """Remove cache entries (all, one stage's, or old ones)."""
    seconds = parse_duration(older_than) if older_than else None
    cache = _open_cache(cache_dir)
    what = (f"stage {stage!r} entries" if stage else "all entries") + (f" older than {older_than}" if older_than else "")
    if not yes and sys.stdin.isatty() and not click.confirm(f"Remove {what} from {cache.directory}?"):
        raise click.Abort()
    removed = cache.clear(stage=stage, older_than=seconds)
    click.echo(f"removed {removed} entr{'y' if removed == 1 else 'ies'} ({what})")


@cache_group.command("explain")
@click.argument("record_id")
@click.option("--recipe", "recipe_ref", required=True, help="The recipe to explain the record against.")
@click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The input file (lets explain check the record's upstream content too).")
@click.option("--model", "models", multiple=True, metavar="NAME=MODEL", help="Model overrides used for the run.")
@cache_options
@user_errors
def cache_explain(record_id, recipe_ref, input_path, models, cache_dir, no_cache):
    """Why RECORD_ID hits or misses the cache: which part of each stage key changed."""
    from aidsafe.config._recipe import load_recipe
    from aidsafe.models._inspect import inspection_models
    from aidsafe.pipeline._compile import compile_recipe
    from aidsafe.runtime._plan import explain_record

    loaded = load_recipe(recipe_ref)
    cache = _open_cache(cache_dir)
    overrides = model_overrides(models)
    program = compile_recipe(loaded, inspection_models(loaded, overrides, identity="backend", cache=cache), cache=cache)
    for line in explain_record(program, record_id, input_path):
        click.echo(line)


__all__ = ["cache_group", "parse_duration"]
