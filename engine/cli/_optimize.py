"""``aidsafe optimize``: tune a recipe's agents (instructions and demos) with
a DSPy optimizer judged by LLM judges or by the inputs' labels. A thin
command over
:func:`aidsafe.tools.optimize`.

Tables go to stdout as Markdown; progress, DSPy's optimizer logs, file
locations and warnings go to stderr.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from aidsafe.cli._errors import user_errors
from aidsafe.cli._options import cache_options, judge_model_options, model_overrides
from aidsafe.cli._output import check_outputs, write_json_summary


def _roles(text: str | None) -> list[str] | None:
    if text is None:
        return None
    roles = [r.strip() for r in text.split(",") if r.strip()]
    if not roles:
        raise click.BadParameter("expected agent names separated by commas, e.g. --roles "
                                 "safety_deliberator,refiner", param_hint="--roles")
    return roles


@click.command("optimize")
@click.argument("recipe")
@click.option("--trainset", "trainset", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Prompts to optimize on (.jsonl or .csv, the recipe's input field); a share is held out "
                   "for validation.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for prompts.json and meta.json (e.g. optimized/NAME); a recipe uses it with "
                   "`prompts: <folder>`.")
@click.option("--metric", default="judges:faithfulness_policy_cot", show_default=True,
              metavar="behavior|FILE:JUDGE[=W],...",
              help="Pointwise judge(s) of a judges file as the metric, e.g. recipes/judges.yaml:faithfulness_policy_cot "
                   "or judges.yaml:faithfulness_policy_cot=0.7,relevance=0.3 (scores mapped to 0..1, weighted "
                   "mean; an unscored verdict counts 0). `behavior`: no judge model, 1 when the response does what "
                   "the row's label asks (answer / decline, by string match), else 0; needs the recipe's "
                   "input.label, and rows labeled unknown are left out.")
@click.option("--optimizer", type=click.Choice(["bootstrap", "mipro", "gepa", "knn"]), default="bootstrap",
              show_default=True,
              help="bootstrap: DSPy BootstrapFewShot (demos from runs the metric accepts); mipro: MIPROv2 "
                   "(instructions and demos, needs optuna); gepa: GEPA (instructions by reflection on the judges' "
                   "feedback); knn: KNNFewShot (per query, demos bootstrapped from the --neighbours nearest "
                   "training prompts by --embedder; the pools go to --out/precedents/AGENT.jsonl).")
@click.option("--roles", metavar="AGENT,...", help="Only these agents are optimized; the others keep their "
                                                     "instructions and get no demos (default: every agent).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.3,
              show_default=True, help="Share of the prompts held out to measure the metric before and after.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and of the optimizer.")
@judge_model_options
@click.option("--prompt-model", help="Model that writes instructions (mipro) or reflects (gepa); default: "
                                     "--judge-model, else the judges file's model.")
@click.option("--prompt-api-base", help="OpenAI-compatible endpoint for the prompt model (default: the judges' "
                                        "endpoint when the prompt model is the judge model).")
@click.option("--prompt-api-key-env", metavar="VAR",
              help="Environment variable holding the prompt model's API key (its name, never the key).")
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
@click.option("--neighbours", type=click.IntRange(min=1), default=4, show_default=True,
              help="knn: nearest training prompts bootstrapped for each query (at most --max-demos become demos).")
@click.option("--embedder", default="lexical", show_default=True, metavar="NAME",
              help="knn: how prompts are embedded: lexical (hashed n-grams, no model), a `models:` entry of the "
                   "recipe, or a model string (local:default, openai/text-embedding-3-small).")
@click.option("--field", help="Input field holding the prompt (default: the recipe's input.field).")
@click.option("--id-field", help="Input field holding the prompt id.")
@click.option("--limit", type=click.IntRange(min=2), help="Only the first N prompts of --trainset.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Program runs in flight at once.")
@click.option("--force", is_flag=True, help="Replace an existing prompts.json in --out.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the before/after summary as JSON (meta.json has it too).")
@click.option("--quiet", "-q", is_flag=True, help="No optimizer logs (DSPy's progress bars remain on a terminal; in a log they are off).")
@cache_options
@user_errors
def optimize_command(recipe, trainset, out_dir, metric, optimizer, roles, val_fraction, seed, judge_model,
                     judge_api_base, judge_api_key_env, prompt_model, prompt_api_base, prompt_api_key_env, models,
                     max_demos, threshold, trials, candidates, neighbours, embedder, field, id_field, limit, workers,
                     force, json_path, quiet, cache_dir, no_cache):
    """Tune RECIPE's agents (instructions and demos) with a DSPy optimizer,
    judged by LLM judges (or, with --metric behavior, by the inputs' labels:
    no judge model, works offline), and save them as data in --out.

    The prompts in --trainset are split (by --seed) into a training part,
    which the optimizer sees, and a validation part, which only measures
    the metric before and after. Prints both; writes --out/prompts.json (per
    agent: instructions and demos, readable and diffable) and
    --out/meta.json (optimizer, metric, scores, recipe hash, date).
    """
    from aidsafe._util.progress import library_bars_off_in_logs

    library_bars_off_in_logs()  # before DSPy (and so tqdm) is imported
    from aidsafe.config._recipe import load_recipe
    from aidsafe.evaluation._report import to_markdown
    from aidsafe.models._routing import routing_report
    from aidsafe.tools._optimize import OptimizeOptions, optimize

    options = OptimizeOptions(optimizer=optimizer, metric=metric, roles=_roles(roles), val_fraction=val_fraction,
                              seed=seed, judge_model=judge_model, judge_api_base=judge_api_base,
                              judge_api_key_env=judge_api_key_env, prompt_model=prompt_model,
                              prompt_api_base=prompt_api_base, prompt_api_key_env=prompt_api_key_env,
                              model_overrides=model_overrides(models), max_demos=max_demos, threshold=threshold,
                              trials=trials, candidates=candidates, neighbours=neighbours, embedder=embedder,
                              field=field, id_field=id_field, limit=limit,
                              workers=workers, cache_dir=cache_dir, use_cache=not no_cache, force=force)
    lines, warnings = routing_report(load_recipe(recipe), options.model_overrides)
    for line in (lines if not quiet else []) + warnings:  # before any model is built or called
        click.echo(line, err=True)
    check_outputs([recipe, trainset], json=json_path)
    with _quiet(quiet):
        result = optimize(recipe, trainset, out_dir, options)
    click.echo(to_markdown(result.tables()))
    for line in result.lines():
        click.echo(line, err=True)
    if json_path:
        write_json_summary(json_path, result.meta)


class _quiet:
    """``--quiet``: DSPy's, GEPA's and optuna's INFO logs off. (DSPy's own
    progress bars stay on a terminal: tqdm reads its settings once, at
    import; see :func:`library_bars_off_in_logs` for logs.)"""

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


__all__ = ["optimize_command"]
