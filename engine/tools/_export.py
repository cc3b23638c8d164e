"""Output records -> training data, and the public AIDSAFE dataset -> records.

Formats (``export(..., fmt=...)``):

* ``sft``: JSONL, one ``{"messages": [...]}`` per record: the conversational
  language-modeling format TRL's ``SFTTrainer`` takes. The CoT goes either
  into the assistant's content inside a tag (``<think>...</think>`` then the
  response; ``thinking="tag"``, the default: every chat template keeps it) or
  into a separate message key (``thinking="field"``, default key
  ``reasoning_content``, which Qwen3-style chat templates render; templates
  without it silently drop the CoT).
* ``dpo``: JSONL in TRL's *conversational preference* format for
  ``DPOTrainer``: ``prompt`` is ``[{"role": "user", ...}]``, ``chosen`` and
  ``rejected`` are each ``[{"role": "assistant", ...}]`` carrying that side's
  CoT and response (same thinking placement as sft).
* ``hf``: a ``datasets.Dataset`` saved with ``save_to_disk`` (a folder; load it
  with ``datasets.load_from_disk``); rows laid out as ``layout`` (sft or dpo).
* ``parquet``: one parquet file, rows laid out as ``layout``.
* ``records``: our own output-record JSONL (useful with ``source="aidsafe"``
  to bring the public dataset into the record layout).

Only ``ok`` records become training rows: ``failed`` and ``filtered`` ones (a
pair below the margin is ``filtered``) are left out and counted, as are
records without what the layout needs. Every output is written to a temporary
name and moved into place, so a crash never leaves a half-written file.
``hf``/``parquet`` need the optional ``export`` extra (``datasets``, ``pyarrow``).
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aidsafe._util.atomic import atomic_path, atomic_write
from aidsafe._util.errors import UserError
from aidsafe.runtime._records import iter_jsonl_records, iter_rows

FORMATS = ("sft", "dpo", "hf", "parquet", "records")
LAYOUTS = ("sft", "dpo")
THINKING = ("tag", "field")
SOURCES = ("records", "aidsafe")
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
    metadata: bool = False  # add id (and, for dpo, belief, scores, margin) columns

    def check(self) -> None:
        if self.thinking not in THINKING:
            raise UserError(f"thinking must be one of {', '.join(THINKING)}, found {self.thinking!r}")
        if not _NAME_RE.match(self.tag):
            raise UserError(f"thinking tag {self.tag!r} must be a plain name such as think or reasoning")
        if not _NAME_RE.match(self.field) or self.field in ("role", "content"):
            raise UserError(f"thinking field {self.field!r} must be a plain name other than role/content, "
                            "such as reasoning_content or thinking")


@dataclass
class ExportSummary:
    """What an export wrote and what it left out, and why."""

    output: str
    format: str
    layout: str | None
    written: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    statuses: Counter = field(default_factory=Counter)  # of the records read

    def lines(self) -> list[str]:
        what = self.format if self.layout in (None, self.format) else f"{self.format}, {self.layout} rows"
        out = [f"wrote {self.written} row(s) ({what}) -> {self.output}"]
        if self.skipped:
            out.append(f"  left out {sum(self.skipped.values())}: "
                       + ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common()))
        if not self.written:
            hint = " and that it comes from a recipe with belief and pair stages" if self.layout == "dpo" else ""
            out.append(f"  nothing was written: check the input's statuses{hint}")
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
    """``({"messages": [...]}, None)`` or ``(None, why it is left out)``."""
    reason = _status_reason(record)
    if reason:
        return None, reason
    response = str(record.get("response") or "").strip()
    if not response:
        return None, "empty response"
    row: dict[str, Any] = {"messages": _prompt_messages(str(record.get("prompt") or ""), options)
                           + [assistant_message(record.get("cot"), response, options)]}
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
        scores = pref.get("scores") or {}
        row.update(id=str(record.get("id")), belief=rejected.get("belief"), score_chosen=scores.get("chosen"),
                   score_rejected=scores.get("rejected"),
                   margin=None if pref.get("margin") is None else float(pref["margin"]))
    return row, None


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
        columns = [pa.field("messages", messages(True))]
        if options.metadata:
            columns.append(pa.field("id", pa.string()))
    else:
        columns = [pa.field("prompt", messages(False)), pa.field("chosen", messages(True)),
                   pa.field("rejected", messages(True))]
        if options.metadata:
            columns += [pa.field("id", pa.string()), pa.field("belief", pa.string()),
                        pa.field("score_chosen", pa.int64()), pa.field("score_rejected", pa.int64()),
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


def _aidsafe_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(row number, row or None, why unusable) from CSV, JSONL, JSON or parquet."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".jsonl", ".ndjson"):
        yield from iter_rows(path)
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UserError(f"{path}: not valid JSON ({exc}); give a JSON array of objects, JSONL, CSV "
                            "or parquet") from None
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON array of objects, found {type(data).__name__}")
        for number, row in enumerate(data, 1):
            yield (number, row, None) if isinstance(row, dict) else \
                (number, None, f"item {number}: expected an object, found {type(row).__name__}")
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError(f"{path}: reading parquet needs pyarrow; {_EXTRA_HINT}") from None
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
            for row in batch.to_pylist():
                number += 1
                yield number, row, None
    else:
        raise UserError(f"{path}: unsupported format {suffix or '(no suffix)'}; the public AIDSAFE dataset ships "
                        "CSV (Beavertails_CoT/train.csv, ...); JSONL, JSON and parquet work too")


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
    (columns ``prompt``, ``refined_thoughts`` or ``thoughts``, ``response``,
    ``deliberation_log``; others go to ``meta``). A row without them becomes a
    ``failed`` record that says what is missing, never a skipped one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"AIDSAFE file {str(path)!r} not found")
    seen: set[str] = set()
    for index, (number, row, error) in enumerate(_aidsafe_rows(path)):
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
        record["provenance"] = {"source": "aidsafe-public", "file": path.name, "row": number,
                                "thoughts_field": thoughts_field}
        yield record


# ------------------------------------------------------------- writing

def _check_output(out: Path, fmt: str) -> None:
    """Refuse outputs that would clobber something that is not ours to replace."""
    if fmt == "hf":
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file; an hf dataset is saved as a folder: give a folder path")
        if out.is_dir() and any(out.iterdir()) and not (out / "state.json").is_file():
            raise UserError(f"{out} is a folder that does not hold a saved dataset; give a new or empty folder "
                            "(an existing saved dataset there is replaced)")
    elif out.is_dir():
        raise UserError(f"{out} is a folder; {fmt} output is one file: give a file path")
    out.parent.mkdir(parents=True, exist_ok=True)


def _write_jsonl(rows: Iterable[dict], out: Path) -> int:
    written = 0
    with atomic_write(out) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
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


def _write_hf(rows: Iterable[dict], out: Path, schema) -> int:
    import datasets
    import pyarrow as pa

    tables = [pa.Table.from_pylist(batch, schema=schema) for batch in _batches(rows)]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    dataset = datasets.Dataset.from_dict(table.to_pydict(), features=datasets.Features.from_arrow_schema(schema))
    # The CLI prints its own summary; datasets' progress bar would interleave with it.
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with atomic_path(out, directory=True) as tmp:
            dataset.save_to_disk(str(tmp))
    finally:
        if bars:
            datasets.enable_progress_bars()
    return len(dataset)


def reviewed_records(records: Iterable[dict], records_path: str | Path, summary: ExportSummary) -> Iterator[dict]:
    """``--reviewed``: ``records`` less those rejected in ``aidsafe view`` (its
    sidecar format is the view package's), each counted in ``summary.skipped``."""
    from aidsafe.view._review import drop_rejected

    return drop_rejected(records, records_path, summary.skipped)


def export(records_path: str | Path, out_path: str | Path, fmt: str, *, layout: str | None = None,
           thinking: str = "tag", tag: str = "think", field: str = "reasoning_content", system: str | None = None,
           metadata: bool = False, source: str = "records", reviewed: bool = False) -> ExportSummary:
    """Write the records in ``records_path`` (our run output, or with
    ``source="aidsafe"`` a file of the public AIDSAFE dataset) to ``out_path``
    as ``fmt`` (sft, dpo, hf, parquet, records). ``layout`` (sft or dpo) says
    what hf/parquet rows hold; ``thinking``/``tag``/``field`` place the CoT.
    ``reviewed``: leave out the records rejected in ``aidsafe view`` (the
    input's ``.review.jsonl`` sidecar), counted in the summary."""
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
    options = ExportOptions(thinking=thinking, tag=tag, field=field, system=system, metadata=metadata)
    options.check()
    out = Path(out_path)
    if fmt in ("hf", "parquet"):
        try:
            import pyarrow  # noqa: F401
            if fmt == "hf":
                import datasets  # noqa: F401
        except ImportError:
            raise UserError(f"--format {fmt} needs {'datasets and pyarrow' if fmt == 'hf' else 'pyarrow'}; "
                            f"{_EXTRA_HINT}") from None
    _check_output(out, fmt)
    summary = ExportSummary(output=str(out), format=fmt, layout=layout)
    records = import_aidsafe(records_path) if source == "aidsafe" else read_records(records_path)
    if reviewed:
        records = reviewed_records(records, records_path, summary)

    def counted(stream: Iterable[dict]) -> Iterator[dict]:
        for record in stream:
            summary.statuses[str(record.get("status"))] += 1
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
        summary.written = _write_hf(rows(), out, arrow_schema(layout, options))
    return summary
