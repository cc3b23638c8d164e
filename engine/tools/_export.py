"""Output records -> training data, and the public AIDSAFE dataset -> records.

Formats (``export(..., fmt=...)``), all in TRL's *conversational* formats:

* ``sft``: JSONL for TRL's ``SFTTrainer``. By default the *prompt-completion*
  layout: ``prompt`` holds the system and user messages, ``completion`` the
  assistant message, so TRL puts the loss on the completion only and never
  trains on the (possibly harmful) prompt. ``messages=True`` writes one
  ``messages`` column instead (TRL then puts the loss on every token unless
  ``SFTConfig(assistant_only_loss=True)`` with a template that has
  ``{% generation %}`` markers).
* ``dpo``: JSONL in the conversational preference format for ``DPOTrainer``:
  ``prompt`` (system and user messages), ``chosen`` and ``rejected`` (each one
  assistant message with that side's CoT and response).
* ``hf``: a folder that ``datasets.load_dataset(folder)`` and
  ``datasets.load_from_disk(folder)`` both open: parquet shards under
  ``data/`` with a dataset card (``README.md``, YAML header with ``configs``
  and ``dataset_info``) for ``load_dataset`` and the Hub, and the same splits
  saved as arrow (``dataset_dict.json``, ``train/``, ``test/``) for
  ``load_from_disk``. ``test_size``/``seed`` split it into train and test;
  ``push_to_hub="ORG/NAME"`` uploads it (:mod:`aidsafe.tools._hub`).
* ``parquet``: one parquet file, rows laid out as ``layout``.
* ``records``: our own output-record JSONL (useful with ``source="aidsafe"``
  to bring the public dataset into the record layout).

The CoT goes inside the assistant's content in a tag (``thinking="tag"``, the
default: ``<think>...</think>`` then the response; every chat template keeps
it) or into a separate message key (``thinking="field"``, default
``reasoning_content``). Chat templates that do not read that key drop the
CoT silently, so ``tokenizer=`` checks the target template and refuses an
export it would strip (:mod:`aidsafe.tools._template`); without it the
summary warns.

Only ``ok`` records become training rows: ``failed`` and ``filtered`` ones (a
pair below the margin is ``filtered``) are left out and counted, as are
records without what the layout needs. Every output is written to a temporary
name and moved into place, so a crash never leaves a half-written file.
``hf``/``parquet`` need the optional ``export`` extra (``datasets``, ``pyarrow``).
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aidsafe._util.atomic import atomic_path, atomic_write
from aidsafe._util.errors import UserError
from aidsafe._util.paths import make_parent, refuse_overwrite
from aidsafe.runtime._records import input_source, iter_jsonl_records, iter_rows
from aidsafe.tools._export_choices import FORMATS, LAYOUTS, SOURCES, THINKING

SFT_STYLES = ("prompt-completion", "messages")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_BATCH = 512
_EXTRA_HINT = "install the export extra: pip install 'aidsafe[export]' (datasets, pyarrow)"


@dataclass(frozen=True)
class ExportOptions:
    """How the CoT and the prompt are laid out in training rows."""

    thinking: str = "tag"  # "tag": inside the assistant content; "field": a separate message key
    tag: str = "think"  # the tag name for thinking="tag"
    field: str = "reasoning_content"  # the message key for thinking="field"
    system: str | None = None  # an optional system message before the user's prompt
    metadata: bool = False  # add id (and, for dpo, belief, scores, measured margin) columns
    messages: bool = False  # sft: one `messages` column instead of prompt/completion

    def check(self) -> None:
        if self.thinking not in THINKING:
            raise UserError(f"thinking must be one of {', '.join(THINKING)}, found {self.thinking!r}")
        if not _NAME_RE.match(self.tag):
            raise UserError(f"thinking tag {self.tag!r} must be a plain name such as think or reasoning")
        if not _NAME_RE.match(self.field) or self.field in ("role", "content"):
            raise UserError(f"thinking field {self.field!r} must be a plain name other than role/content, "
                            "such as reasoning_content or thinking")

    def describe(self) -> str:
        """Where the CoT goes, in words (for the summary and the card)."""
        if self.thinking == "field":
            return f"in the assistant message's `{self.field}` key"
        return f"inside the assistant content as <{self.tag}>...</{self.tag}>"


@dataclass
class ExportSummary:
    """What an export wrote and what it left out, and why."""

    output: str
    format: str
    layout: str | None
    written: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    statuses: Counter = field(default_factory=Counter)  # of the records read
    splits: dict = field(default_factory=dict)  # hf: split -> rows
    notes: list = field(default_factory=list)  # what a trainer should know about these rows
    warnings: list = field(default_factory=list)
    pushed: str | None = None  # the dataset's URL after --push-to-hub
    review: Any = None  # --reviewed: the view package's ReviewTally (rejected, edited, stale)

    def lines(self) -> list[str]:
        """The summary the CLI prints."""
        what = self.format if self.layout in (None, self.format) else f"{self.format}, {self.layout} rows"
        out = [f"wrote {self.written} row(s) ({what}) -> {self.output}"]
        if len(self.splits) > 1:
            out.append("  splits: " + ", ".join(f"{name} {n}" for name, n in self.splits.items()))
        if self.skipped:
            out.append(f"  left out {sum(self.skipped.values())}: "
                       + ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common()))
        if not self.written:
            hint = " and that it comes from a recipe with belief and pair stages" if self.layout == "dpo" else ""
            out.append(f"  nothing was written: check the input's statuses{hint}")
        if self.review is not None and self.review.edited:
            out.append(f"  {self.review.edited} record(s) with the text a reviewer edited in `aidsafe view`")
        if self.review is not None and self.review.stale:
            out.append(f"  warning: {self.review.stale} review label(s) not applied: their record changed since "
                       f"they were given (see them as 'stale' in `aidsafe view`)")
        out += [f"  note: {note}" for note in self.notes]
        out += [f"  warning: {warning}" for warning in self.warnings]
        if self.pushed:
            out.append(f"pushed to {self.pushed}")
        return out


# ------------------------------------------------------------------ rows

def _thinking_text(cot: Any) -> str:
    if isinstance(cot, str):
        return cot.strip()
    return "\n".join(str(t).strip() for t in (cot or []) if str(t).strip())


def assistant_message(cot: Any, response: str, options: ExportOptions) -> dict:
    """One assistant turn carrying a CoT and a response."""
    thinking = _thinking_text(cot)
    if options.thinking == "field":
        return {"role": "assistant", "content": response, options.field: thinking}
    return {"role": "assistant", "content": f"<{options.tag}>\n{thinking}\n</{options.tag}>\n\n{response}"}


def _prompt_messages(prompt: str, options: ExportOptions) -> list[dict]:
    head = [{"role": "system", "content": options.system}] if options.system else []
    return head + [{"role": "user", "content": prompt}]


def sft_row(record: dict, options: ExportOptions) -> tuple[dict | None, str | None]:
    """``({"prompt": [...], "completion": [...]}, None)`` (or ``{"messages"}``
    with ``options.messages``), or ``(None, why it is left out)``."""
    reason = _status_reason(record)
    if reason:
        return None, reason
    response = str(record.get("response") or "").strip()
    if not response:
        return None, "empty response"
    prompt = _prompt_messages(str(record.get("prompt") or ""), options)
    answer = assistant_message(record.get("cot"), response, options)
    row: dict[str, Any] = {"messages": prompt + [answer]} if options.messages else \
        {"prompt": prompt, "completion": [answer]}
    if options.metadata:
        row["id"] = str(record.get("id"))
    return row, None


def dpo_row(record: dict, options: ExportOptions) -> tuple[dict | None, str | None]:
    """``({"prompt", "chosen", "rejected"}, None)`` or ``(None, why)``."""
    reason = _status_reason(record)
    if reason:
        return None, reason
    pref = record.get("preference") or {}
    chosen, rejected = pref.get("chosen") or {}, pref.get("rejected") or {}
    if not chosen or not rejected:
        return None, "no preference pair"
    if pref.get("kept") is False:
        return None, "pair below margin"
    if not str(chosen.get("response") or "").strip() or not str(rejected.get("response") or "").strip():
        return None, "empty response in pair"
    row: dict[str, Any] = {
        "prompt": _prompt_messages(str(record.get("prompt") or ""), options),
        "chosen": [assistant_message(chosen.get("cot"), str(chosen["response"]).strip(), options)],
        "rejected": [assistant_message(rejected.get("cot"), str(rejected["response"]).strip(), options)],
    }
    if options.metadata:
        # `margin` is the measured gap (TRL's RewardTrainer reads a margin column so); the recipe's
        # threshold (preference.margin) goes in the dataset card.
        scores = pref.get("scores") or {}
        chosen_score, rejected_score = _score(scores.get("chosen")), _score(scores.get("rejected"))
        measured = chosen_score - rejected_score if chosen_score is not None and rejected_score is not None \
            else _score(pref.get("separation"))
        row.update(id=str(record.get("id")), belief=rejected.get("belief"), score_chosen=chosen_score,
                   score_rejected=rejected_score, margin=measured)
    return row, None


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _status_reason(record: dict) -> str | None:
    status = record.get("status")
    return None if status == "ok" else str(status or "no status")


ROW_BUILDERS = {"sft": sft_row, "dpo": dpo_row}


def arrow_schema(layout: str, options: ExportOptions):
    """The pyarrow schema of ``layout`` rows (explicit, so an empty export
    still has TRL's columns and every row has the same message struct)."""
    import pyarrow as pa

    def messages(with_thinking: bool):
        fields = [pa.field("role", pa.string()), pa.field("content", pa.string())]
        if with_thinking and options.thinking == "field":
            fields.append(pa.field(options.field, pa.string()))
        return pa.list_(pa.struct(fields))

    if layout == "sft":
        columns = [pa.field("messages", messages(True))] if options.messages else \
            [pa.field("prompt", messages(False)), pa.field("completion", messages(True))]
        if options.metadata:
            columns.append(pa.field("id", pa.string()))
    else:
        columns = [pa.field("prompt", messages(False)), pa.field("chosen", messages(True)),
                   pa.field("rejected", messages(True))]
        if options.metadata:
            columns += [pa.field("id", pa.string()), pa.field("belief", pa.string()),
                        pa.field("score_chosen", pa.float64()), pa.field("score_rejected", pa.float64()),
                        pa.field("margin", pa.float64())]
    return pa.schema(columns)


# ------------------------------------------------------------- reading

def read_records(path: str | Path) -> Iterator[dict]:
    """Stream our output records (JSONL) from ``path``."""
    for number, record in iter_jsonl_records(path):
        if "status" not in record:
            raise UserError(f"{path}:{number}: not an aidsafe output record (no `status` field); to read the "
                            "public AIDSAFE dataset use --from aidsafe")
        yield record


def _literal(text: str) -> Any:
    """A JSON or Python literal written into a text cell (CSV exports of
    lists), or the text itself. ``ast.literal_eval`` evaluates literals only."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return text
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d{1,3}[.)])\s+")


def parse_thoughts(value: Any) -> list[str]:
    """A CoT cell as a list of thoughts: a list, a list written as text, or
    text with one thought per line (list markers removed)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = _literal(value)
    if isinstance(value, str):
        return [_LIST_MARK.sub("", line).strip() for line in value.splitlines() if _LIST_MARK.sub("", line).strip()]
    if isinstance(value, (list, tuple)):
        return [str(t).strip() for t in value if t is not None and str(t).strip()]
    return [str(value).strip()] if str(value).strip() else []


AIDSAFE_FIELDS = ("prompt", "refined_thoughts", "thoughts", "response", "deliberation_log")


def import_aidsafe(path: str | Path) -> Iterator[dict]:
    """Records (our output layout) from a file of the public AIDSAFE dataset
    (any input :func:`aidsafe.runtime.iter_rows` reads: CSV, JSONL, JSON,
    parquet, ``hf:PATH[:split]``) with columns ``prompt``,
    ``refined_thoughts`` or ``thoughts``, ``response``, ``deliberation_log``;
    others go to ``meta``. A row without them becomes a
    ``failed`` record that says what is missing, never a skipped one."""
    source = input_source(path)
    name = str(source) if source.kind == "hf" else Path(source.path).name
    seen: set[str] = set()
    for index, (number, row, error) in enumerate(iter_rows(source)):
        row = row or {}
        rid = str(row.get("id")) if row.get("id") not in (None, "") else str(number)
        if rid in seen:
            rid = f"{rid}#row{number}"
        seen.add(rid)
        thoughts_field = "refined_thoughts" if "refined_thoughts" in row else "thoughts" if "thoughts" in row else None
        if error is None:
            missing = [name for name in ("prompt", "response") if name not in row]
            if thoughts_field is None:
                missing.insert(1, "refined_thoughts (or thoughts)")
            if missing:
                known = ", ".join(map(str, row)) or "(none)"
                error = f"row {number}: no field {', '.join(missing)} (fields: {known}); is this the AIDSAFE layout?"
            elif not isinstance(row["prompt"], str) or not row["prompt"].strip():
                error = f"row {number}: field 'prompt' must be non-empty text"
        log = row.get("deliberation_log")
        record: dict[str, Any] = {
            "id": rid, "index": index, "status": "failed" if error else "ok",
            "prompt": row.get("prompt") if isinstance(row.get("prompt"), str) else None,
            "intents": [],
            "cot": parse_thoughts(row.get(thoughts_field)) if thoughts_field else [],
            "response": str(row.get("response") or "").strip(),
            "deliberation": {"stop_reason": None, "rounds": None, "turns": None,
                             "log": _literal(log) if isinstance(log, str) else log},
        }
        meta = {k: v for k, v in row.items() if k not in AIDSAFE_FIELDS and k != "id"}
        if meta:
            record["meta"] = meta
        record["error"] = {"type": "InputError", "message": error} if error else None
        record["provenance"] = {"source": "aidsafe-public", "file": name, "row": number,
                                "thoughts_field": thoughts_field}
        yield record


# ------------------------------------------------------------- writing

_DATASET_MARKERS = ("dataset_dict.json", "state.json")


def _check_output(out: Path, fmt: str) -> None:
    """Refuse outputs that would clobber something that is not ours to replace."""
    if fmt == "hf":
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file; an hf dataset is saved as a folder: give a folder path")
        if out.is_dir() and any(out.iterdir()) and not any((out / m).is_file() for m in _DATASET_MARKERS):
            raise UserError(f"{out} is a folder that does not hold a saved dataset; give a new or empty folder "
                            "(an existing saved dataset there is replaced)")
    elif out.is_dir():
        raise UserError(f"{out} is a folder; {fmt} output is one file: give a file path")
    make_parent(out)


class _NoRows(Exception):
    """Raised inside an atomic write to leave nothing behind: no 0-byte file,
    and an earlier export at that path stays as it was."""


def _write_jsonl(rows: Iterable[dict], out: Path) -> int:
    """Rows as JSONL; with no rows, no file is written."""
    written = 0
    with contextlib.suppress(_NoRows), atomic_write(out) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
        if not written:
            raise _NoRows
    return written


def _batches(rows: Iterable[dict]) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_parquet(rows: Iterable[dict], out: Path, schema) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    written = 0
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in _batches(rows):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            written += len(batch)
    return written


def check_test_size(test_size: float) -> None:
    """A fraction (0 <= x < 1) or a whole count (>= 1), else a :class:`UserError`."""
    if test_size < 0 or (test_size >= 1 and test_size != int(test_size)):
        raise UserError(f"--test-size {test_size:g}: give a fraction between 0 and 1 (0.1) or a row count (50)")


def held_out_count(test_size: float, rows: int) -> int:
    """Rows in the test split: ``test_size`` is a fraction (0 < x < 1, rounded
    up as ``datasets.train_test_split`` does) or a count (a whole number >= 1);
    0 means no test split. At least one row stays in train."""
    check_test_size(test_size)
    if test_size == 0 or rows == 0:
        return 0
    count = math.ceil(test_size * rows) if test_size < 1 else int(test_size)
    if count >= rows:
        raise UserError(f"--test-size {test_size:g} leaves no training rows out of {rows}; "
                        "give a smaller fraction or count")
    return count


def split_rows(rows: list[dict], test_size: float, seed: int) -> dict[str, list[dict]]:
    """``{"train": [...], "test": [...]}`` (test only when ``test_size``): a
    seeded random choice of test rows; both splits keep the input order."""
    count = held_out_count(test_size, len(rows))
    if not count:
        return {"train": rows}
    chosen = set(random.Random(seed).sample(range(len(rows)), count))
    return {"train": [r for i, r in enumerate(rows) if i not in chosen],
            "test": [r for i, r in enumerate(rows) if i in chosen]}


@dataclass(frozen=True)
class HfFolder:
    """What :func:`write_hf_folder` wrote: rows per split."""

    splits: dict


def write_hf_folder(splits: dict[str, list[dict]], out: Path, schema,
                    card: Callable[[dict, dict, list], str]) -> HfFolder:
    """Write ``splits`` to the folder ``out`` (atomically, replacing it):
    ``data/SPLIT-00000-of-00001.parquet`` and ``README.md`` (``card(rows per
    split, bytes per split, YAML features)``) for ``load_dataset``/the Hub, and the arrow copy
    ``save_to_disk`` writes (``dataset_dict.json``, one folder per split) for
    ``load_from_disk``."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = datasets.Features.from_arrow_schema(schema)
    tables = {name: pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
              for name, rows in splits.items()}
    dataset = datasets.DatasetDict({name: datasets.Dataset(table, info=datasets.DatasetInfo(features=features),
                                                           split=datasets.NamedSplit(name))
                                    for name, table in tables.items()})
    counts = {name: table.num_rows for name, table in tables.items()}
    # The CLI prints its own summary; datasets' progress bar would interleave with it.
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with atomic_path(out, directory=True) as tmp:
            (tmp / "data").mkdir()
            for name, table in tables.items():
                pq.write_table(table, tmp / "data" / f"{name}-00000-of-00001.parquet")
            dataset.save_to_disk(str(tmp))
            sizes = {name: table.nbytes for name, table in tables.items()}
            (tmp / "README.md").write_text(card(counts, sizes, features._to_yaml_list()), encoding="utf-8")
    finally:
        if bars:
            datasets.enable_progress_bars()
    return HfFolder(splits=counts)


def reviewed_records(records: Iterable[dict], records_path: str | Path, summary: ExportSummary) -> Iterator[dict]:
    """``--reviewed``: ``records`` as reviewed in ``aidsafe view`` (its
    sidecar format is the view package's): the rejected left out and counted
    in ``summary.skipped``, needs-edit records with the reviewer's text;
    ``summary.review`` tallies them once the stream is read."""
    from aidsafe.view._review import ReviewTally, apply_reviews, sidecar_path

    summary.review = ReviewTally(sidecar_path(records_path).name)
    return apply_reviews(records, records_path, summary.skipped, summary.review)


def _thinking_checks(options: ExportOptions, tokenizer: str | None, summary: ExportSummary) -> None:
    """Refuse a ``--thinking field`` export the target template would strip
    the CoT from; warn when no template was given to check."""
    if tokenizer is None:
        if options.thinking == "field":
            summary.warnings.append(
                f"--thinking field: chat templates that do not render `{options.field}` drop the CoT without a "
                "word (SmolLM2's does); pass --tokenizer PATH|NAME to check the template you train with, or use "
                "--thinking tag")
        return
    from aidsafe.tools._template import check_thinking_template, refusal

    check = check_thinking_template(tokenizer, options.field)
    if options.thinking == "field":
        if not check.keeps_thinking:
            raise UserError(refusal(check))
        summary.notes.append(f"the chat template of {tokenizer} renders `{options.field}`: the CoT is trained on")
    if options.messages:
        summary.notes.append(f"the chat template of {tokenizer} "
                             + ("has {% generation %} markers: assistant_only_loss=True works" if
                                check.generation_markers else "has no {% generation %} markers, which "
                                "assistant_only_loss=True needs: keep the default prompt-completion layout"))


def export(records_path: str | Path, out_path: str | Path, fmt: str, *, layout: str | None = None,
           thinking: str = "tag", tag: str = "think", field: str = "reasoning_content", system: str | None = None,
           metadata: bool = False, source: str = "records", messages: bool = False, tokenizer: str | None = None,
           test_size: float = 0.0, seed: int = 0, license: str | None = None, name: str | None = None,
           push_to_hub: str | None = None, private: bool = False, reviewed: bool = False) -> ExportSummary:
    """Write the records in ``records_path`` (our run output, or with
    ``source="aidsafe"`` a file of the public AIDSAFE dataset) to ``out_path``
    as ``fmt`` (sft, dpo, hf, parquet, records).

    ``layout`` (sft or dpo) says what hf/parquet rows hold; sft rows are
    prompt/completion unless ``messages``. ``thinking``/``tag``/``field``
    place the CoT; ``tokenizer`` (a folder or model name) checks that its
    chat template keeps a ``thinking="field"`` CoT. For hf: ``test_size`` (a
    fraction or a count) and ``seed`` split off a test set, ``license`` (the
    source prompts') and ``name`` go in the dataset card, and ``push_to_hub``
    (``ORG/NAME``, token from ``HF_TOKEN``) uploads the folder, ``private``
    for a new repo. ``reviewed``: leave out the records rejected in ``aidsafe
    view`` (the input's ``.review.jsonl`` sidecar), counted in the summary."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    if fmt in LAYOUTS:
        if layout not in (None, fmt):
            raise UserError(f"--layout {layout} contradicts --format {fmt}; layout applies to hf and parquet")
        layout = fmt
    elif fmt in ("hf", "parquet"):
        layout = layout or "sft"
        if layout not in LAYOUTS:
            raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    elif layout is not None:
        raise UserError("--layout applies to hf and parquet only")
    if messages and layout != "sft":
        raise UserError("--messages applies to sft rows (--format sft, or hf/parquet with --layout sft)")
    if fmt != "hf":
        for given, flag in ((test_size, "--test-size"), (push_to_hub, "--push-to-hub"), (private, "--private")):
            if given:
                raise UserError(f"{flag} applies to --format hf (a dataset folder with splits and a card); "
                                f"add --format hf")
    if private and not push_to_hub:
        raise UserError("--private applies with --push-to-hub ORG/NAME")
    if push_to_hub:
        from aidsafe.tools._hub import check_repo_id, hub_token

        check_repo_id(push_to_hub)
        hub_token()  # fail before the export, not after it
    options = ExportOptions(thinking=thinking, tag=tag, field=field, system=system, metadata=metadata,
                            messages=messages)
    options.check()
    check_test_size(test_size)
    out = Path(out_path)
    if fmt in ("hf", "parquet"):
        try:
            import pyarrow  # noqa: F401
            if fmt == "hf":
                import datasets  # noqa: F401
        except ImportError:
            raise UserError(f"--format {fmt} needs {'datasets and pyarrow' if fmt == 'hf' else 'pyarrow'}; "
                            f"{_EXTRA_HINT}") from None
    from aidsafe.view._review import sidecar_path

    reads = [records_path, sidecar_path(records_path) if reviewed else None]
    if tokenizer and Path(tokenizer).exists():
        reads.append(tokenizer)
    refuse_overwrite(out, reads, "export output", folder=fmt == "hf")
    _check_output(out, fmt)
    summary = ExportSummary(output=str(out), format=fmt, layout=layout)
    if layout:
        _thinking_checks(options, tokenizer, summary)
    if layout == "sft" and messages:
        summary.notes.append("messages layout: TRL puts the loss on every token, the prompt included, unless "
                             "SFTConfig(assistant_only_loss=True) with a chat template that has {% generation %} "
                             "markers; the default prompt-completion layout needs neither")
    records = import_aidsafe(records_path) if source == "aidsafe" else read_records(records_path)
    if reviewed:
        records = reviewed_records(records, records_path, summary)
    from aidsafe.tools._card import CardStats

    stats = CardStats()

    def counted(stream: Iterable[dict]) -> Iterator[dict]:
        for record in stream:
            summary.statuses[str(record.get("status"))] += 1
            stats.add(record)
            yield record

    if fmt == "records":
        summary.written = _write_jsonl(counted(records), out)
        return summary

    build = ROW_BUILDERS[layout]

    def rows() -> Iterator[dict]:
        for record in counted(records):
            row, reason = build(record, options)
            if row is None:
                summary.skipped[reason] += 1
            else:
                yield row

    if fmt in LAYOUTS:
        summary.written = _write_jsonl(rows(), out)
    elif fmt == "parquet":
        summary.written = _write_parquet(rows(), out, arrow_schema(layout, options))
    else:
        from aidsafe.tools._card import CardInfo, render_card

        style = "preference" if layout == "dpo" else SFT_STYLES[1] if messages else SFT_STYLES[0]
        title = name or (push_to_hub.split("/")[1] if push_to_hub else out.name)

        def card(counts: dict, sizes: dict, features: list) -> str:
            info = CardInfo(name=title, layout=layout, style=style, thinking=options.describe(), splits=counts,
                            split_bytes=sizes, features=features, license=license, skipped=dict(summary.skipped),
                            review=summary.review.to_dict() if summary.review is not None else None)
            return render_card(stats, info, repo_id=push_to_hub)

        written = write_hf_folder(split_rows(list(rows()), test_size, seed), out, arrow_schema(layout, options),
                                  card)
        summary.splits = written.splits
        summary.written = sum(written.splits.values())
        if push_to_hub:
            from aidsafe.tools._hub import push_folder

            summary.pushed = push_folder(out, push_to_hub, private=private,
                                         message=f"aidsafe export: {summary.written} {layout} rows")
    return summary
