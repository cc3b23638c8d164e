"""The ``aidsafe`` command. Thin: each command calls a library function."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from aidsafe import __version__
from aidsafe.cli._errors import user_errors
from aidsafe._util.errors import UserError


def _cache_options(func):
    func = click.option("--no-cache", is_flag=True, help="Bypass the cache: read nothing, write nothing.")(func)
    func = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="AIDSAFE_CACHE_DIR",
                        help="Cache directory (default: cache/ in the project; env AIDSAFE_CACHE_DIR).")(func)
    return func


def _parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip())
    if not match:
        raise click.BadParameter(f"{text!r}: expected a duration such as 30m, 12h, 7d")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aidsafe")
def main():
    """aidsafe: generate policy-embedded chain-of-thought safety data by
    multi-agent deliberation, from YAML recipes."""


@main.command()
@click.argument("recipes", nargs=-1, required=True)
@user_errors
def validate(recipes):
    """Check RECIPES (files, or names in recipes/) and report every problem."""
    from aidsafe._util.errors import RecipeError
    from aidsafe.evaluation._judges import is_judges_file, load_judges
    from aidsafe.config._recipe import load_recipe

    failed = 0
    for ref in recipes:
        try:
            if is_judges_file(ref):
                judges = load_judges(ref)
                click.echo(f"{ref}: ok (judges file, {len(judges.judges)} judges)")
                continue
            recipe = load_recipe(ref)
        except RecipeError as exc:
            failed += 1
            click.echo(str(exc), err=True)
            continue
        except UserError as exc:
            failed += 1
            click.echo(f"{ref}: {exc}", err=True)
            continue
        click.echo(f"{ref}: ok ({len(recipe.stages)} stages, {len(recipe.agents)} agents)")
    if failed:
        raise click.ClickException(f"{failed} of {len(recipes)} recipe(s) invalid")


@main.command()
@click.argument("recipe")
@user_errors
def show(recipe):
    """Print RECIPE resolved (after extends) and its stage graph."""
    from aidsafe.pipeline._compile import compile_recipe
    from aidsafe.models._inspect import inspection_models
    from aidsafe.runtime._plan import describe_recipe
    from aidsafe.config._recipe import load_recipe

    loaded = load_recipe(recipe)
    click.echo(describe_recipe(compile_recipe(loaded, inspection_models(loaded), cache=None)))


@main.command()
@click.argument("recipe")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Prompts: .jsonl (one object per line) or .csv.")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Output .jsonl (required unless --plan). Rerun the same command to resume.")
@click.option("--field", help="Input field holding the prompt (overrides the recipe's input.field).")
@click.option("--id-field", help="Input field holding the record id (default: row number).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N records.")
@click.option("--workers", type=click.IntRange(min=1), help="Records in flight at once (default: the models' concurrency).")
@click.option("--model", "models", multiple=True, metavar="NAME=MODEL",
              help="Override a model of the recipe, e.g. --model default=local:smoke or default=openai/gpt-4o-mini.")
@click.option("--plan", is_flag=True, help="Dry run: per stage, records reused from the cache and new LM calls.")
@click.option("--retry-failed/--keep-failed", default=True, help="On resume, recompute records that failed before (default) or keep them.")
@click.option("--max-failures", type=click.IntRange(min=0), help="Abort when more than N records fail.")
@click.option("--executor", type=click.Choice(["thread", "ray"]), default="thread", show_default=True,
              help="Run records in threads here, or on Ray workers (pip install -e '.[ray]').")
@click.option("--address", "ray_address", help="Ray cluster address for --executor ray (default: a local Ray).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@_cache_options
@user_errors
def run(recipe, input_path, output_path, field, id_field, limit, workers, models, plan, retry_failed, max_failures,
        executor, ray_address, quiet, cache_dir, no_cache):
    """Run RECIPE over the prompts in --input, writing one record per prompt."""
    from aidsafe.models._engine import parse_override
    from aidsafe.runtime._run import RunOptions
    from aidsafe.runtime._run import run as run_recipe

    overrides = dict(parse_override(m) for m in models)
    options = RunOptions(cache_dir=cache_dir, use_cache=not no_cache, workers=workers, model_overrides=overrides,
                         field=field, id_field=id_field, limit=limit, retry_failed=retry_failed,
                         max_failures=max_failures, progress=not quiet, executor=executor, ray_address=ray_address)
    if plan:
        from aidsafe.store._cache import Cache
        from aidsafe.pipeline._compile import compile_recipe
        from aidsafe.models._inspect import inspection_models
        from aidsafe._util.paths import default_cache_dir
        from aidsafe.runtime._plan import plan_run
        from aidsafe.config._recipe import load_recipe

        loaded = load_recipe(recipe)
        cache = Cache(cache_dir or default_cache_dir(), enabled=not no_cache)
        models = inspection_models(loaded, overrides, identity="backend", cache=cache)
        program = compile_recipe(loaded, models, cache=cache)
        for line in plan_run(program, input_path, field, id_field, limit).lines():
            click.echo(line)
        return
    if output_path is None:
        raise click.UsageError("--output is required (or use --plan)")
    if not Path(input_path).exists():
        raise UserError(f"input file {str(input_path)!r} not found")
    try:
        summary = run_recipe(recipe, input_path, output_path, options)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(130)
    for line in summary.lines():
        click.echo(line, err=True)
    if summary.interrupted:
        sys.exit(130)
    if summary.aborted:
        sys.exit(1)


@main.group()
def cache():
    """Inspect and manage the content-addressed cache."""


@cache.command("stats")
@_cache_options
@user_errors
def cache_stats(cache_dir, no_cache):
    """Entries and size per section, and the last run's hits and misses."""
    from aidsafe.store._cache import Cache
    from aidsafe._util.paths import default_cache_dir

    c = Cache(cache_dir or default_cache_dir())
    stats = c.stats()
    click.echo(f"cache directory: {stats['directory']}")
    for name, s in stats["sections"].items():
        click.echo(f"  {name:<7} {s['entries']:>8} entries  {s['bytes'] / 1e6:>9.2f} MB")
    last = stats.get("last_run")
    if last:
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
    else:
        click.echo("no run recorded yet")


@cache.command("clear")
@click.option("--stage", help="Only entries of this stage id.")
@click.option("--older-than", help="Only entries older than this (e.g. 30m, 12h, 7d).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_cache_options
@user_errors
def cache_clear(stage, older_than, yes, cache_dir, no_cache):
    """Remove cache entries (all, one stage's, or old ones)."""
    from aidsafe.store._cache import Cache
    from aidsafe._util.paths import default_cache_dir

    seconds = _parse_duration(older_than) if older_than else None
    c = Cache(cache_dir or default_cache_dir())
    what = (f"stage {stage!r} entries" if stage else "all entries") + (f" older than {older_than}" if older_than else "")
    if not yes and sys.stdin.isatty() and not click.confirm(f"Remove {what} from {c.directory}?"):
        raise click.Abort()
    removed = c.clear(stage=stage, older_than=seconds)
    click.echo(f"removed {removed} entr{'y' if removed == 1 else 'ies'} ({what})")


@cache.command("explain")
@click.argument("record_id")
@click.option("--recipe", "recipe_ref", required=True, help="The recipe to explain the record against.")
@click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The input file (lets explain check the record's upstream content too).")
@click.option("--model", "models", multiple=True, metavar="NAME=MODEL", help="Model overrides used for the run.")
@_cache_options
@user_errors
def cache_explain(record_id, recipe_ref, input_path, models, cache_dir, no_cache):
    """Why RECORD_ID hits or misses the cache: which part of each stage key changed."""
    from aidsafe.store._cache import Cache
    from aidsafe.pipeline._compile import compile_recipe
    from aidsafe.models._inspect import inspection_models
    from aidsafe.models._engine import parse_override
    from aidsafe._util.paths import default_cache_dir
    from aidsafe.runtime._plan import explain_record
    from aidsafe.config._recipe import load_recipe

    loaded = load_recipe(recipe_ref)
    c = Cache(cache_dir or default_cache_dir())
    overrides = dict(parse_override(m) for m in models)
    program = compile_recipe(loaded, inspection_models(loaded, overrides, identity="backend", cache=c), cache=c)
    for line in explain_record(program, record_id, input_path):
        click.echo(line)


@main.command()
@click.option("--model", "model_ref", default="default", show_default=True,
              help="default (embedded Qwen2.5-Coder-0.5B), smoke (SmolLM2-135M) or a path to a .gguf file.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads.")
@click.option("--context", "n_ctx", default=4096, show_default=True, type=click.IntRange(min=256))
@click.option("--parallel", default=2, show_default=True, type=click.IntRange(min=1), help="Concurrent slots.")
@_cache_options
@user_errors
def serve(model_ref, port, threads, n_ctx, parallel, cache_dir, no_cache):
    """Serve the embedded model as an OpenAI-compatible server on 127.0.0.1,
    so several processes share one loaded model (use it from a recipe with
    model: openai/NAME and api_base: http://127.0.0.1:PORT/v1)."""
    from aidsafe.models.local import serve as serve_model
    from aidsafe._util.paths import weights_dir

    click.echo(f"serving {model_ref} on http://127.0.0.1:{port}/v1 (Ctrl-C to stop)", err=True)
    serve_model(model_ref, Path(cache_dir) if cache_dir else weights_dir(), port=port, n_threads=threads, n_ctx=n_ctx,
                n_parallel=parallel)


def _add_commands() -> None:
    from aidsafe.cli._diff import diff_command
    from aidsafe.cli._eval import bench_command, eval_command
    from aidsafe.cli._export import export_command
    from aidsafe.cli._optimize import compare_command, optimize_command

    for command in (diff_command, eval_command, bench_command, export_command, optimize_command, compare_command):
        main.add_command(command)


_add_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
