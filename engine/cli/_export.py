"""``aidsafe export``: output records -> SFT / DPO training data (JSONL for
TRL, a saved Hugging Face dataset, parquet), and the public AIDSAFE dataset
-> our records (``--from aidsafe``). Thin: :func:`aidsafe.tools.export` does
the work."""

from __future__ import annotations

from pathlib import Path

import click

from aidsafe.cli._errors import user_errors
from aidsafe.tools._export import FORMATS, LAYOUTS, SOURCES, THINKING


@click.command("export")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("-i", "--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="Records written by `aidsafe run` (JSONL), or with --from aidsafe a file of the public "
                   "AIDSAFE dataset (CSV, JSONL, JSON or parquet).")
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS),
              help="sft: TRL SFTTrainer messages JSONL; dpo: TRL DPOTrainer prompt/chosen/rejected JSONL; "
                   "hf: a datasets folder (save_to_disk); parquet: one file; records: our record JSONL.")
@click.option("--layout", type=click.Choice(LAYOUTS), help="Rows of --format hf/parquet: sft (default) or dpo.")
@click.option("--from", "source", type=click.Choice(SOURCES), default="records", show_default=True,
              help="What --input holds: our records, or the public AIDSAFE dataset's layout "
                   "(prompt, refined_thoughts or thoughts, response, deliberation_log).")
@click.option("--thinking", type=click.Choice(THINKING), default="tag", show_default=True,
              help="Where the CoT goes: inside the assistant content in --tag, or in a separate message key "
                   "(--thinking-field).")
@click.option("--tag", default="think", show_default=True, help="Tag name for --thinking tag: <TAG>cot</TAG>.")
@click.option("--thinking-field", "thinking_field", default="reasoning_content", show_default=True,
              help="Message key for --thinking field (Qwen3-style templates read reasoning_content).")
@click.option("--system", help="A system message put before every prompt.")
@click.option("--metadata", is_flag=True, help="Add id (and for dpo: belief, scores, margin) columns.")
@click.option("--reviewed", is_flag=True,
              help="Leave out the records rejected in `aidsafe view` (the input's .review.jsonl sidecar).")
@user_errors
def export_command(out, input_path, fmt, layout, source, thinking, tag, thinking_field, system, metadata,
                   reviewed=False):
    """Write the records in --input to OUT as training data. Only `ok`
    records become rows; failed and filtered ones are left out and counted."""
    from aidsafe.tools._export import export

    summary = export(input_path, out, fmt, layout=layout, thinking=thinking, tag=tag, field=thinking_field,
                     system=system, metadata=metadata, source=source, reviewed=reviewed)
    for line in summary.lines():
        click.echo(line, err=True)


__all__ = ["export_command"]
