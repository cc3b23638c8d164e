"""``aidsafe eval`` and ``aidsafe bench``: thin click commands over
:func:`engine.evaluation.evaluate` and :func:`engine.benchmarks.run_benchmark`.

Tables go to stdout as Markdown; progress, usage and file locations go to
stderr, so ``aidsafe eval out.jsonl > scores.md`` keeps a clean table.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from aidsafe.cli._errors import user_errors


def _common(func):
    """Options shared by eval and bench: judges, cache, output files."""
    options = [
        click.option("--judges", "judges", default="judges", show_default=True,
                     help="Judges file: a path, or a name in recipes/ (judges = recipes/judges.yaml)."),
        click.option("--judge-api-base", help="OpenAI-compatible endpoint for --judge-model."),
        click.option("--workers", type=click.IntRange(min=1), help="Model calls in flight at once (default 1)."),
        click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write a self-contained HTML report (charts need the `report` extra: matplotlib)."),
        click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write the summary as JSON."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        click.option("--no-cache", is_flag=True, help="Bypass the cache: read nothing, write nothing."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="AIDSAFE_CACHE_DIR",
                     help="Cache directory (default: cache/ in the project; env AIDSAFE_CACHE_DIR)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _emit(result, title: str, report_path: Path | None, json_path: Path | None, meta: dict) -> None:
    from aidsafe.evaluation._report import to_markdown, write_html

    click.echo(to_markdown(result.tables()))
    for line in result.lines():
        click.echo(line, err=True)
    if report_path:
        write_html(report_path, title, result.tables(), result.charts(), meta)
        click.echo(f"report written to {report_path}", err=True)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"summary written to {json_path}", err=True)


@click.command("eval")
@click.argument("records", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--judge-model", help="Model string replacing every judge model of the judges file, e.g. "
                                    "local:default or openai/gpt-4o-mini (default: the file's models).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Only this pointwise judge (repeatable; default: all of them).")
@click.option("--pairwise", "pairwise", multiple=True, metavar="NAME",
              help="With two files: only this pairwise judge (repeatable; default: all).")
@click.option("--no-pairwise", is_flag=True, help="With two files: compare scores only, no pairwise judge.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the *.scored.jsonl copies go (default: beside each input).")
@_common
@user_errors
def eval_command(records, judge_model, metrics, pairwise, no_pairwise, output_dir, judges, judge_api_base, workers,
                 report_path, json_path, quiet, no_cache, cache_dir):
    """Score RECORDS (output of `aidsafe run`) with LLM judges.

    One file: writes OUT.scored.jsonl (each record gets `scores` and `judge`)
    and prints each metric's mean with a 95% bootstrap interval and the
    number unscored. Two files: also prints the difference per metric (paired
    over shared ids) and runs the pairwise preference judge in both orders.
    """
    from aidsafe.evaluation._eval import evaluate

    if len(records) > 2:
        raise click.UsageError(f"eval takes one records file, or two to compare; got {len(records)}")
    result = evaluate(records, judges=judges, judge_model=judge_model, metrics=metrics or None,
                      pairwise=[] if no_pairwise else (pairwise or None), output_dir=output_dir, cache_dir=cache_dir,
                      use_cache=not no_cache, workers=workers, api_base=judge_api_base, progress=not quiet)
    title = "aidsafe eval: " + " vs ".join(Path(r).name for r in records)
    _emit(result, title, report_path, json_path,
          {"files": ", ".join(map(str, records)), "judges": result.judges.get("judges"),
           "judge models": ", ".join(str(m.get("model")) for m in result.judges.get("models", {}).values())})


@click.command("bench")
@click.argument("model")
@click.option("--suite", type=click.Choice(["safety", "overrefusal", "jailbreak", "utility", "all"]), default="all",
              show_default=True, help="Which benchmarks (listed above).")
@click.option("--limit", type=click.IntRange(min=1), help="At most N items per set, spread over categories.")
@click.option("--judge-model", help="Model string for the refusal and StrongREJECT-rubric judges. Without it, "
                                    "answers are classified by string matching (labelled as a fallback).")
@click.option("--api-base", help="OpenAI-compatible endpoint of MODEL (e.g. http://127.0.0.1:8080/v1).")
@click.option("--api-key-env", help="Environment variable that holds MODEL's API key.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True,
              help="Longest answer to each safety prompt.")
@click.option("--shots", type=click.IntRange(0, 5), default=0, show_default=True,
              help="MMLU: solved dev examples before each question (5 = the standard 5-shot).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every item (prompt, answer, classification) as JSONL.")
@_common
@user_errors
def bench_command(model, suite, limit, judge_model, api_base, api_key_env, max_tokens, shots, output_path, judges,
                  judge_api_base, workers, report_path, json_path, quiet, no_cache, cache_dir):
    """Evaluate MODEL (local:smoke, local:default, openai/NAME with --api-base,
    ...) on the shipped benchmark sets.

    \b
    safety       StrongREJECT, HarmBench, AdvBench: safe-response rate (+ StrongREJECT score with a judge)
    overrefusal  XSTest: compliance / over-refusal on safe prompts, refusal on unsafe contrast prompts
    jailbreak    StrongREJECT prompts inside jailbreak templates: safe-response rate under attack
    utility      MMLU subset: accuracy
    """
    from aidsafe.evaluation._benchmarks import run_benchmark

    result = run_benchmark(model, suite=suite, limit=limit, judge_model=judge_model, api_base=api_base,
                           api_key_env=api_key_env, judge_api_base=judge_api_base, judges=judges,
                           cache_dir=cache_dir, use_cache=not no_cache, workers=workers, max_tokens=max_tokens,
                           shots=shots, output=output_path, progress=not quiet)
    if output_path:
        click.echo(f"items written to {output_path}", err=True)
    _emit(result, f"aidsafe bench: {model} ({suite})", report_path, json_path,
          {"model": model, "suite": suite, "limit": limit or "none", "classifier": result.classifier})


__all__ = ["bench_command", "eval_command"]
