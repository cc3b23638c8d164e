"""``aidsafe export``: output records -> SFT / DPO training data (JSONL for
TRL, a Hugging Face dataset folder with a card, optionally pushed to the Hub,
parquet), and the public AIDSAFE dataset -> our records (``--from aidsafe``).
Thin: :func:`aidsafe.tools.export` does the work."""

from __future__ import annotations

from pathlib import Path

import click

from aidsafe.cli._errors import user_errors
from aidsafe.tools._export_choices import FORMATS, LAYOUTS, SOURCES, THINKING


@click.command("export")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("-i", "--input", "input_path", required=True, metavar="PATH",
              help="Records written by `aidsafe run` (JSONL), or with --from aidsafe the public AIDSAFE "
                   "dataset (CSV, JSONL, JSON, parquet or hf:PATH[:split]).")
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS),
              help="sft: TRL SFTTrainer prompt/completion JSONL; dpo: TRL DPOTrainer prompt/chosen/rejected "
                   "JSONL; hf: a dataset folder (parquet + card) that load_dataset and load_from_disk open; "
                   "parquet: one file; records: our record JSONL.")
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
@click.option("--tokenizer", metavar="PATH|NAME",
              help="The tokenizer you will train with: with --thinking field, refuse if its chat template would "
                   "drop the CoT.")
@click.option("--messages", is_flag=True,
              help="SFT rows as one `messages` column instead of prompt/completion (TRL then trains on the "
                   "prompt too unless assistant_only_loss=True).")
@click.option("--metadata", is_flag=True,
              help="Add id (and for dpo: belief, score_chosen, score_rejected and the measured margin) columns.")
@click.option("--test-size", type=click.FloatRange(min=0), default=0, show_default=True,
              help="hf: rows held out as the test split, a fraction (0.1) or a count (50).")
@click.option("--seed", type=int, default=0, show_default=True, help="hf: seed of the train/test split.")
@click.option("--license", "license_id", metavar="ID",
              help="hf: license of the source prompts for the dataset card (e.g. cc-by-4.0).")
@click.option("--name", help="hf: the dataset's title in the card (default: the folder or repo name).")
@click.option("--push-to-hub", "push_to_hub", metavar="ORG/NAME",
              help="hf: upload the folder to this Hugging Face dataset repo (token from HF_TOKEN).")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repo private.")
@click.option("--reviewed", is_flag=True,
              help="Leave out the records rejected in `aidsafe view` (the input's .review.jsonl sidecar).")
@user_errors
def export_command(out, input_path, fmt, layout, source, thinking, tag, thinking_field, system, tokenizer,
                   messages, metadata, test_size, seed, license_id, name, push_to_hub, private, reviewed=False):
    """Write the records in --input to OUT as training data. Only `ok`
    records become rows; failed and filtered ones are left out and counted."""
    from aidsafe.tools._export import export

    summary = export(input_path, out, fmt, layout=layout, thinking=thinking, tag=tag, field=thinking_field,
                     system=system, metadata=metadata, source=source, messages=messages, tokenizer=tokenizer,
                     test_size=test_size, seed=seed, license=license_id, name=name, push_to_hub=push_to_hub,
                     private=private, reviewed=reviewed)
    for line in summary.lines():
        click.echo(line, err=True)
    if not summary.written:
        left = "holds an empty table with the columns" if fmt in ("hf", "parquet") else "was not written"
        raise click.ClickException(f"no rows to export from {input_path}: {out} {left}; "
                                   "only records with status ok become rows (see the counts above)")


__all__ = ["export_command"]
