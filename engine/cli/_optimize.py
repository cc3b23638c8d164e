"""``aidsafe optimize`` and ``aidsafe compare``: thin click commands over
:func:`engine.optimize.optimize` and :func:`engine.compare.compare_recipes`.

Tables go to stdout as Markdown; progress, DSPy's optimizer logs, file
locations and warnings go to stderr.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from aidsafe.cli._errors import user_errors


def _cache_options(func):
    func = click.option("--no-cache", is_flag=True, help="Bypass the cache: read nothing, write nothing.")(func)
    func = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="AIDSAFE_CACHE_DIR",
                        help="Cache directory (default: cache/ in the project; env AIDSAFE_CACHE_DIR).")(func)
    return func


def _overrides(models) -> dict[str, str]:
    from aidsafe.models._engine import parse_override

    return dict(parse_override(m) for m in models)


def _roles(text: str | None) -> list[str] | None:
    if text is None:
        return None
    roles = [r.strip() for r in text.split(",") if r.strip()]
    if not roles:
        raise click.BadParameter("expected agent names separated by commas, e.g. --roles "
                                 "safety_deliberator,refiner", param_hint="--roles")
    return roles


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    click.echo(f"summary written to {path}", err=True)


@click.command("optimize")
@click.argument("recipe")
@click.option("--trainset", "trainset", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Prompts to optimize on (.jsonl or .csv, the recipe's input field); a share is held out "
                   "for validation.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for prompts.json and meta.json (e.g. optimized/NAME); a recipe uses it with "
                   "`prompts: <folder>`.")
@click.option("--metric", default="judges:faithfulness_policy_cot", show_default=True, metavar="FILE:JUDGE[=W],...",
              help="Pointwise judge(s) of a judges file as the metric, e.g. recipes/judges.yaml:faithfulness_policy_cot "
                   "or judges.yaml:faithfulness_policy_cot=0.7,relevance=0.3 (scores mapped to 0..1, weighted "
                   "mean; an unscored verdict counts 0).")
@click.option("--optimizer", type=click.Choice(["bootstrap", "mipro", "gepa"]), default="bootstrap", show_default=True,
              help="bootstrap: DSPy BootstrapFewShot (demos from runs the metric accepts); mipro: MIPROv2 "
                   "(instructions and demos, needs optuna); gepa: GEPA (instructions by reflection on the judges' "
                   "feedback).")
@click.option("--roles", metavar="AGENT,...", help="Only these agents are optimized; the others keep their "
                                                     "instructions and get no demos (default: every agent).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.3,
              show_default=True, help="Share of the prompts held out to measure the metric before and after.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and of the optimizer.")
@click.option("--judge-model", help="Model string replacing every judge model of the judges file.")
@click.option("--prompt-model", help="Model that writes instructions (mipro) or reflects (gepa); default: "
                                     "--judge-model, else the judges file's model.")
@click.option("--model", "models", multiple=True, metavar="NAME=MODEL",
              help="Override a model of the recipe, e.g. --model default=local:smoke.")
@click.option("--max-demos", type=click.IntRange(min=0), default=2, show_default=True,
              help="Bootstrapped demos per agent (bootstrap, mipro); 0 tunes instructions only (mipro).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.75, show_default=True,
              help="A training run becomes a demo only if its metric (0..1) reaches this; 0 accepts every run.")
@click.option("--trials", type=click.IntRange(min=1),
              help="mipro: search trials (default 6); gepa: budget in full evaluations of the training set (default 3).")
@click.option("--candidates", type=click.IntRange(min=2), default=3, show_default=True,
              help="mipro: instruction and demo-set candidates per agent.")
@click.option("--field", help="Input field holding the prompt (default: the recipe's input.field).")
@click.option("--id-field", help="Input field holding the prompt id.")
@click.option("--limit", type=click.IntRange(min=2), help="Only the first N prompts of --trainset.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Program runs in flight at once.")
@click.option("--force", is_flag=True, help="Replace an existing prompts.json in --out.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the before/after summary as JSON (meta.json has it too).")
@click.option("--quiet", "-q", is_flag=True, help="No optimizer logs (DSPy's progress bars remain).")
@_cache_options
@user_errors
def optimize_command(recipe, trainset, out_dir, metric, optimizer, roles, val_fraction, seed, judge_model,
                     prompt_model, models, max_demos, threshold, trials, candidates, field, id_field, limit, workers,
                     force, json_path, quiet, cache_dir, no_cache):
    """Tune RECIPE's agents (instructions and demos) with a DSPy optimizer,
    judged by LLM judges, and save them as data in --out.

    The prompts in --trainset are split (by --seed) into a training part,
    which the optimizer sees, and a validation part, which only measures
    the metric before and after. Prints both; writes --out/prompts.json (per
    agent: instructions and demos, readable and diffable) and
    --out/meta.json (optimizer, metric, scores, recipe hash, date).
    """
    from aidsafe.tools._optimize import OptimizeOptions, optimize
    from aidsafe.evaluation._report import to_markdown

    options = OptimizeOptions(optimizer=optimizer, metric=metric, roles=_roles(roles), val_fraction=val_fraction,
                              seed=seed, judge_model=judge_model, prompt_model=prompt_model,
                              model_overrides=_overrides(models), max_demos=max_demos, threshold=threshold,
                              trials=trials, candidates=candidates, field=field, id_field=id_field, limit=limit,
                              workers=workers, cache_dir=cache_dir, use_cache=not no_cache, force=force)
    with _quiet(quiet):
        result = optimize(recipe, trainset, out_dir, options)
    click.echo(to_markdown(result.tables()))
    for line in result.lines():
        click.echo(line, err=True)
    if json_path:
        _write_json(json_path, result.meta)


@click.command("compare")
@click.argument("recipes", nargs=-1, required=True)
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Prompts every variant runs on (.jsonl or .csv).")
@click.option("--judges", default="judges", show_default=True,
              help="Judges file: a path, or a name in recipes/ (judges = recipes/judges.yaml).")
@click.option("--judge-model", help="Model string replacing every judge model of the judges file.")
@click.option("--judge-api-base", help="OpenAI-compatible endpoint for --judge-model.")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Only this pointwise judge (repeatable; default: all of them).")
@click.option("--pairwise", "pairwise", multiple=True, metavar="NAME",
              help="Also run this pairwise judge, both orders, on each variant vs the first (repeatable; "
                   "default: none).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N prompts.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default="compare", show_default=True,
              help="Where each variant's records (LABEL.jsonl) and scored copies go. Rerunning resumes them.")
@click.option("--model", "models", multiple=True, metavar="NAME=MODEL",
              help="Override a model of every recipe, e.g. --model default=local:smoke.")
@click.option("--workers", type=click.IntRange(min=1), help="Records (and judge calls) in flight at once.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML report.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the comparison as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@_cache_options
@user_errors
def compare_command(recipes, input_path, judges, judge_model, judge_api_base, metrics, pairwise, limit, out_dir,
                    models, workers, report_path, json_path, quiet, cache_dir, no_cache):
    """Run RECIPES (two or more; files or names in recipes/) on the same
    prompts, judge every output, and compare each variant with the first.

    The variants share one cache, so stages they have in common run once
    (`aidsafe compare aidsafe aidsafe-1round -i prompts.jsonl` runs the
    intents and initial CoT once); the tables say how many stage results each
    variant reused. Scores are printed side by side, each with its 95%
    bootstrap interval, and the difference from the first variant with a
    paired interval over the prompts both scored.
    """
    from aidsafe.tools._compare import compare_recipes
    from aidsafe.evaluation._report import to_markdown, write_html

    if len(recipes) < 2:
        raise click.UsageError("compare needs at least two recipes: the first is the baseline, e.g. "
                               "aidsafe compare recipes/baseline.yaml recipes/aidsafe.yaml -i prompts.jsonl")
    result = compare_recipes(recipes, input_path, judges=judges, judge_model=judge_model, metrics=metrics or None,
                             pairwise=pairwise, limit=limit, out_dir=out_dir, model_overrides=_overrides(models),
                             cache_dir=cache_dir, use_cache=not no_cache, workers=workers,
                             judge_api_base=judge_api_base, progress=not quiet)
    tables = result.tables()
    click.echo(to_markdown(tables))
    for line in result.lines():
        click.echo(line, err=True)
    if report_path:
        write_html(report_path, "aidsafe compare: " + " vs ".join(v.label for v in result.variants), tables,
                   result.charts(),
                   {"input": str(input_path), "judges": str(judges)})
        click.echo(f"report written to {report_path}", err=True)
    if json_path:
        _write_json(json_path, result.to_dict())


class _quiet:
    """``--quiet``: DSPy's, GEPA's and optuna's INFO logs off. (DSPy's own
    progress bars stay: tqdm reads its settings once, at import.)"""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._levels: dict[str, int] = {}

    def __enter__(self):
        if self.enabled:
            for name in ("dspy", "gepa", "optuna"):
                logger = logging.getLogger(name)
                self._levels[name] = logger.level
                logger.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc):
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        return False


__all__ = ["compare_command", "optimize_command"]
