"""``aidsafe run``: a recipe over a prompts file, one output record per
prompt, resumable; ``--plan`` predicts the calls, ``--dry-run`` runs the
recipe on the scripted mock model."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from aidsafe.cli._errors import user_errors
from aidsafe.cli._options import cache_options, model_overrides


@click.command("run")
@click.argument("recipe")
@click.option("-i", "--input", "input_path", required=True, metavar="PATH",
              help="Prompts: .jsonl, .json (an array of objects), .csv, .parquet, or hf:PATH_OR_NAME[:split] "
                   "(a Hugging Face dataset saved on disk, or one in the local HF cache).")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Output .jsonl (required unless --plan). Rerun the same command to resume.")
@click.option("--field", help="Input field holding the prompt (overrides the recipe's input.field).")
@click.option("--id-field", help="Input field holding the record id (default: row number).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N records.")
@click.option("--workers", type=click.IntRange(min=1), help="Records in flight at once (default: the models' concurrency).")
@click.option("--model", "models", multiple=True, metavar="NAME=MODEL",
              help="Override a model of the recipe, e.g. --model default=local:smoke or default=openai/gpt-4o-mini; "
                   "'*=MODEL' overrides every model (judge and embed too). Each model's route is printed first.")
@click.option("--api-base", metavar="URL",
              help="OpenAI-compatible endpoint for every remote model of the recipe (openai/NAME, hosted_vllm/NAME), "
                   "e.g. http://127.0.0.1:8080/v1 from `aidsafe serve`; local: models are unaffected.")
@click.option("--plan", is_flag=True, help="Call nothing: per stage, records reused from the cache and new LM calls.")
@click.option("--dry-run", is_flag=True,
              help="Run the recipe on the scripted mock model (--model '*=mock'): schema-valid answers that vary "
                   "by record, so every branch is taken on some record; no model, no network, no weights. "
                   "Its records say so (provenance.dry_run) and never mix with a real run's.")
@click.option("--force-restart", is_flag=True,
              help="Start the output again: drop its earlier records instead of resuming them (needed when the "
                   "models or the policy text changed since they were written).")
@click.option("--retry-failed/--keep-failed", default=True, help="On resume, recompute records that failed before (default) or keep them.")
@click.option("--max-failures", type=click.IntRange(min=0), help="Abort when more than N records fail.")
@click.option("--executor", type=click.Choice(["thread", "ray"]), default="thread", show_default=True,
              help="Run records in threads here, or on Ray workers (pip install -e '.[ray]').")
@click.option("--address", "ray_address", help="Ray cluster address for --executor ray (default: a local Ray).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@cache_options
@user_errors
def run_command(recipe, input_path, output_path, field, id_field, limit, workers, models, api_base, plan, dry_run,
                force_restart, retry_failed, max_failures, executor, ray_address, quiet, cache_dir, no_cache):
    """Run RECIPE over the prompts in --input, writing one record per prompt."""
    from aidsafe.runtime._records import input_source
    from aidsafe.runtime._run import RunOptions
    from aidsafe.runtime._run import run as run_recipe

    overrides = model_overrides(models)
    if dry_run:
        if models or api_base:
            given = "--model" if models else "--api-base"
            raise click.UsageError(f"--dry-run runs every model on the scripted mock; drop {given} (or run some "
                                   "models only on it with --model NAME=mock)")
        from aidsafe.models._engine import ALL_MODELS, MOCK

        overrides = {ALL_MODELS: MOCK}
    if plan:
        _plan(recipe, input_path, field, id_field, limit, overrides, cache_dir, no_cache, api_base)
        return
    options = RunOptions(cache_dir=cache_dir, use_cache=not no_cache, workers=workers, model_overrides=overrides,
                         api_base=api_base,
                         field=field, id_field=id_field, limit=limit, retry_failed=retry_failed,
                         max_failures=max_failures, progress=not quiet, executor=executor, ray_address=ray_address,
                         force_restart=force_restart)
    if output_path is None:
        raise click.UsageError("--output is required (or use --plan)")
    input_source(input_path)  # a missing or unreadable input fails before the recipe is compiled
    if dry_run:  # loaded here to list its conditional stages after the run
        from aidsafe.config._recipe import load_recipe

        recipe = load_recipe(recipe)
    branches = BranchTally(recipe)
    try:
        summary = run_recipe(recipe, input_path, output_path, options, on_record=branches.add)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(130)
    for line in summary.lines():
        click.echo(line, err=True)
    if branches.dry_run:
        for line in branches.lines():
            click.echo(line, err=True)
    if summary.interrupted:
        _exit_now(130)
    if summary.aborted:
        sys.exit(1)
    failed = summary.statuses.get("failed", 0)
    if summary.total and failed == summary.total:
        reason = summary.failures.most_common(1)[0][0] if summary.failures else "see the records' error fields"
        raise click.ClickException(f"every record failed ({failed} of {summary.total}), e.g. {reason}; "
                                   f"fix the cause and rerun the same command (failed records are recomputed)")


class BranchTally:
    """What a dry run shows after its summary: for each conditional stage, on
    how many of the records it computed the stage ran, was skipped (from
    ``provenance.skipped``) or was not reached (the record was filtered
    before it), so a user sees every branch taken."""

    def __init__(self, recipe=None):
        self.records = 0
        self.failed = 0
        self.dry_run = False
        self.ran: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.why: dict[str, str] = {}  # stage id -> its condition, in the recipe's order
        for spec in getattr(recipe, "stages", ()):
            branch, when = spec.raw.get("branch"), spec.raw.get("when")
            if isinstance(branch, dict):
                self.why[spec.id] = f"branch {branch.get('name')}: {branch.get('when')}" + (
                    f", when: {when}" if when else "")
            elif when:
                self.why[spec.id] = f"when: {when}"

    def add(self, record: dict) -> None:
        """Count one record written by the run (resumed ones are not seen)."""
        provenance = record.get("provenance") or {}
        self.dry_run = self.dry_run or bool(provenance.get("dry_run"))
        if record.get("status") == "failed":  # stopped part-way: its skips say nothing
            self.failed += 1
            return
        self.records += 1
        for stage in provenance.get("stages") or {}:
            self.ran[stage] = self.ran.get(stage, 0) + 1
        for entry in provenance.get("skipped") or []:
            stage = entry.get("stage")
            self.skipped[stage] = self.skipped.get(stage, 0) + 1
            self.why.setdefault(stage, f"branch {entry['branch']}: {entry['when']}" if entry.get("branch")
                                else f"when: {entry.get('when')}")

    def lines(self) -> list[str]:
        """``dry run: ...`` and one line per conditional stage."""
        out = ["dry run: every model was the scripted mock, no model was called (the records carry "
               "provenance.dry_run); the conditional stages on the records computed now:"]
        for stage in self.why:
            ran, skipped = self.ran.get(stage, 0), self.skipped.get(stage, 0)
            rest = self.records - ran - skipped
            out.append(f"  {stage} ({self.why[stage]}): ran on {ran}, skipped on {skipped}"
                       + (f", not reached on {rest} (filtered before it)" if rest else "")
                       + f" of {self.records}")
        if not self.why:
            out.append("  (the recipe has no `when:` or branch)")
        if self.failed:
            out.append(f"  ({self.failed} failed record(s) not counted)")
        return out


def _exit_now(code: int) -> None:
    """Exit without waiting for model calls still in flight after Ctrl-C
    (a normal exit joins their threads, which a server that never answers
    would hold until its timeout). The journal and the output are already
    written and closed."""
    import os
    import threading

    if any(t.name.startswith("aidsafe") and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _plan(recipe, input_path, field, id_field, limit, overrides, cache_dir, no_cache, api_base=None) -> None:
    """``--plan``: per stage, the records the cache serves and the LM calls left."""
    from aidsafe._util.paths import default_cache_dir
    from aidsafe.config._recipe import load_recipe
    from aidsafe.models._inspect import inspection_models
    from aidsafe.models._routing import routing_report
    from aidsafe.pipeline._compile import compile_recipe
    from aidsafe.runtime._plan import plan_run
    from aidsafe.runtime._run import RunOptions, check_named_id_field
    from aidsafe.store._cache import Cache

    loaded = load_recipe(recipe)
    check_named_id_field(loaded, input_path, RunOptions(id_field=id_field))
    lines, warnings = routing_report(loaded, overrides, api_base)
    for line in lines:
        click.echo(line)
    for warning in warnings:
        click.echo(warning, err=True)
    cache = Cache(cache_dir or default_cache_dir(), enabled=not no_cache)
    models = inspection_models(loaded, overrides, identity="backend", cache=cache, api_base=api_base)
    program = compile_recipe(loaded, models, cache=cache)
    for line in plan_run(program, input_path, field, id_field, limit).lines():
        click.echo(line)


__all__ = ["run_command"]
