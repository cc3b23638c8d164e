"""``aidsafe compare``: run several recipes on the same prompts, judge every
output and compare each variant with the first. A thin command over
:func:`aidsafe.tools.compare_recipes`.

Tables go to stdout as Markdown; progress, file locations and warnings go to
stderr.
"""

from __future__ import annotations

from pathlib import Path

import click

from aidsafe.cli._errors import user_errors
from aidsafe.cli._options import cache_options, judge_model_options, model_overrides
from aidsafe.cli._output import check_outputs, emit_result


@click.command("compare")
@click.argument("recipes", nargs=-1, required=True)
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Prompts every variant runs on (.jsonl or .csv).")
@click.option("--judges", default="judges", show_default=True,
              help="Judges file: a path, or a name in recipes/ (judges = recipes/judges.yaml).")
@judge_model_options
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
@cache_options
@user_errors
def compare_command(recipes, input_path, judges, judge_model, judge_api_base, judge_api_key_env, metrics, pairwise,
                    limit, out_dir, models, workers, report_path, json_path, quiet, cache_dir, no_cache):
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

    if len(recipes) < 2:
        raise click.UsageError("compare needs at least two recipes: the first is the baseline, e.g. "
                               "aidsafe compare recipes/baseline.yaml recipes/aidsafe.yaml -i prompts.jsonl")
    from aidsafe.evaluation._judge_specs import resolve_judges_path

    check_outputs([input_path, resolve_judges_path(judges), *recipes], report=report_path, json=json_path)
    result = compare_recipes(recipes, input_path, judges=judges, judge_model=judge_model, metrics=metrics or None,
                             pairwise=pairwise, limit=limit, out_dir=out_dir, model_overrides=model_overrides(models),
                             cache_dir=cache_dir, use_cache=not no_cache, workers=workers,
                             judge_api_base=judge_api_base, judge_api_key_env=judge_api_key_env,
                             progress=not quiet)
    emit_result(result, "aidsafe compare: " + " vs ".join(v.label for v in result.variants), report_path, json_path,
                {"input": str(input_path), "judges": str(judges)})


__all__ = ["compare_command"]
