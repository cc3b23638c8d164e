"""``aidsafe eval``: score run outputs with LLM judges (one file), or compare
two (paired differences and a pairwise judge). A thin command over
:func:`aidsafe.evaluation.evaluate`."""

from __future__ import annotations

from pathlib import Path

import click

from aidsafe.cli._errors import user_errors
from aidsafe.cli._options import judging_options
from aidsafe.cli._output import check_outputs, emit_result


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
@judging_options
@user_errors
def eval_command(records, judge_model, metrics, pairwise, no_pairwise, output_dir, judges, judge_api_base,
                 judge_api_key_env, workers, report_path, json_path, quiet, no_cache, cache_dir):
    """Score RECORDS (output of `aidsafe run`) with LLM judges.

    One file: writes OUT.scored.jsonl (each record gets `scores` and `judge`)
    and prints each metric's mean with a 95% bootstrap interval and the
    number unscored. Two files: also prints the difference per metric (paired
    over shared ids) and runs the pairwise preference judge in both orders.
    """
    from aidsafe._util.paths import refuse_overwrite
    from aidsafe.evaluation._eval import evaluate, scored_path
    from aidsafe.evaluation._judge_specs import resolve_judges_path

    if len(records) > 2:
        raise click.UsageError(f"eval takes one records file, or two to compare; got {len(records)}")
    reads = [*records, resolve_judges_path(judges)]
    check_outputs(reads, report=report_path, json=json_path)
    for record_file in records:
        refuse_overwrite(scored_path(record_file, output_dir), reads, "the scored copy")
    result = evaluate(records, judges=judges, judge_model=judge_model, metrics=metrics or None,
                      pairwise=[] if no_pairwise else (pairwise or None), output_dir=output_dir, cache_dir=cache_dir,
                      use_cache=not no_cache, workers=workers, api_base=judge_api_base, progress=not quiet,
                      api_key_env=judge_api_key_env)
    title = "aidsafe eval: " + " vs ".join(Path(r).name for r in records)
    emit_result(result, title, report_path, json_path,
                {"files": ", ".join(map(str, records)), "judges": result.judges.get("judges"),
                 "judge models": ", ".join(str(m.get("model")) for m in result.judges.get("models", {}).values())})
    scored = sum(s.n for file in result.summaries for s in file)
    paired = sum(n for p in result.pairwise for k, n in p.outcomes.items() if k != "unscored")
    if scored == 0 and paired == 0:
        unscored = sum(s.unscored for file in result.summaries for s in file)
        skipped = sum(s.skipped for file in result.summaries for s in file)
        raise click.ClickException(
            f"nothing was scored: {unscored} judge call(s) failed or gave no usable score, {skipped} skipped "
            f"(failed or filtered records); see the `judge` field in {', '.join(result.scored_paths)}")


__all__ = ["eval_command"]
