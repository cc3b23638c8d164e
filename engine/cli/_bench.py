"""``aidsafe bench``: a model on the shipped public benchmark sets. A thin
command over :func:`aidsafe.evaluation.run_benchmark`."""

from __future__ import annotations

from pathlib import Path

import click

from aidsafe.cli._errors import user_errors
from aidsafe.cli._options import judging_options
from aidsafe.cli._output import check_outputs, emit_result


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
@judging_options
@user_errors
def bench_command(model, suite, limit, judge_model, api_base, api_key_env, max_tokens, shots, output_path, judges,
                  judge_api_base, judge_api_key_env, workers, report_path, json_path, quiet, no_cache, cache_dir):
    """Evaluate MODEL (local:smoke, local:default, openai/NAME with --api-base,
    ...) on the shipped benchmark sets.

    \b
    safety       StrongREJECT, HarmBench, AdvBench: safe-response rate (+ StrongREJECT score with a judge)
    overrefusal  XSTest: compliance / over-refusal on safe prompts, refusal on unsafe contrast prompts
    jailbreak    StrongREJECT prompts inside jailbreak templates: safe-response rate under attack
    utility      MMLU subset: accuracy
    """
    from aidsafe.evaluation._benchmarks import run_benchmark
    from aidsafe.evaluation._judge_specs import resolve_judges_path

    check_outputs([resolve_judges_path(judges)], output=output_path, report=report_path, json=json_path)

    result = run_benchmark(model, suite=suite, limit=limit, judge_model=judge_model, api_base=api_base,
                           api_key_env=api_key_env, judge_api_base=judge_api_base, judges=judges,
                           judge_api_key_env=judge_api_key_env,
                           cache_dir=cache_dir, use_cache=not no_cache, workers=workers, max_tokens=max_tokens,
                           shots=shots, output=output_path, progress=not quiet)
    if output_path:
        click.echo(f"items written to {output_path}", err=True)
    emit_result(result, f"aidsafe bench: {model} ({suite})", report_path, json_path,
                {"model": model, "suite": suite, "limit": limit or "none", "classifier": result.classifier})


__all__ = ["bench_command"]
