"""Input records in, output records out.

Inputs are JSONL, CSV (such as the shipped prompt sets), JSON arrays, parquet
or Hugging Face datasets (``hf:PATH_OR_NAME[:split]``); every input row
becomes exactly one output record, with a status: ``ok``, ``filtered`` or
``failed`` (a bad input row is ``failed`` with the reason, never skipped).

Output is crash-safe: finished records are appended to ``OUT.journal`` (one
flushed line each, fsync'd at most once a second: see :class:`Journal`); the
output file itself is only ever replaced atomically,
in input order, from the journal. A torn last journal line (kill -9 mid-write)
is cut off on the next start. A rerun resumes from the journal.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from aidsafe._util.atomic import atomic_write
from aidsafe._util.errors import UserError
from aidsafe.config._specs import InputSpec


@dataclass
class InputRecord:
    index: int  # 0-based position in the input
    id: str
    prompt: str | None
    meta: dict = field(default_factory=dict)
    error: str | None = None  # why the row is unusable
    fields: dict = field(default_factory=dict)  # the record fields the input gives (`input.columns`, label)
    source: dict | None = None  # the input set: {"name": path or hf:NAME, "sha256" or "fingerprint"}


_INPUT_FORMATS = ".jsonl, .json (an array of objects, or JSONL), .csv, .parquet, or hf:PATH[:split]"
_EXPORT_EXTRA = "install the export extra: pip install 'aidsafe[export]' (datasets, pyarrow)"


@dataclass(frozen=True)
class InputSource:
    """Where input rows come from: a file (``kind`` is its format) or a
    Hugging Face dataset (``kind="hf"``: a folder saved with ``save_to_disk``
    or holding data files, or a dataset name in the local HF cache, and the
    ``split``, None for the only one or ``train``)."""

    kind: str  # csv, jsonl, json, parquet, hf
    path: str
    split: str | None = None

    def __str__(self) -> str:
        return f"hf:{self.path}" + (f":{self.split}" if self.split else "") if self.kind == "hf" else self.path


def input_source(path: str | Path) -> InputSource:
    """Parse an input argument (a file path, or ``hf:PATH_OR_NAME[:split]``)
    and check it exists; a :class:`UserError` says which forms are accepted."""
    text = str(path)
    if text.startswith("hf:"):
        spec = text[3:]
        split = None
        # `hf:data/ds:test`: the last `:NAME` is the split unless the whole spec is an existing path.
        if ":" in spec and not Path(spec).exists():
            spec, split = spec.rsplit(":", 1)
        if not spec or split == "":
            raise UserError(f"input {text!r}: expected hf:PATH_OR_NAME[:split], e.g. hf:out/ds:train")
        return InputSource("hf", spec, split)
    file = Path(text)
    if file.is_dir():
        raise UserError(f"input {text!r} is a folder; for a Hugging Face dataset saved there write hf:{text} "
                        f"(inputs: {_INPUT_FORMATS})")
    if not file.is_file():
        raise UserError(f"input file {text!r} not found")
    suffix = file.suffix.lower()
    kinds = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
    if suffix not in kinds:
        raise UserError(f"{file}: unsupported input format {suffix or '(no suffix)'}; use {_INPUT_FORMATS}")
    return InputSource(kinds[suffix], text)


def iter_rows(path: str | Path | InputSource) -> Iterator[tuple[int, dict | None, str | None]]:
    """(row number, row or None, why the row is unusable) from an input: CSV
    (utf-8, a byte-order mark allowed), JSONL, a JSON array of objects,
    parquet, or ``hf:PATH_OR_NAME[:split]``; a bad row is reported, never
    skipped. Row numbers are file lines for CSV/JSONL, 1-based positions
    otherwise."""
    source = path if isinstance(path, InputSource) else input_source(path)
    if source.kind == "csv":
        yield from _csv_rows(source.path)
    elif source.kind == "json" and _starts_with(source.path, "["):
        yield from _json_array_rows(Path(source.path))
    elif source.kind in ("jsonl", "json"):
        for number, line in enumerate(_text_lines(source.path), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                yield number, None, f"line {number}: not valid JSON ({exc.msg}); fix or remove the line"
                continue
            except RecursionError:
                yield number, None, f"line {number}: JSON nested too deeply to read; flatten or remove the line"
                continue
            yield _object_row(number, row, "line")
    elif source.kind == "parquet":
        yield from _parquet_rows(Path(source.path))
    else:
        for number, row in enumerate(_hf_dataset(source), 1):
            yield number, row, None


def _text_lines(path: str | Path) -> Iterator[str]:
    """The lines of a UTF-8 text file, a leading byte-order mark dropped
    (spreadsheet programs start their CSV exports with one). A byte that is
    not UTF-8 is a :class:`UserError` naming the file, line and column."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{path}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                                f"{exc.start + 1}); save the file as UTF-8 (spreadsheets: \"CSV UTF-8\")") from None


def _csv_rows(path: str | Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """Rows of a CSV file, numbered from 2 (the header is 1); malformed CSV is a
    :class:`UserError` naming the file and line."""
    # Prompt sets and datasets with long CoT cells exceed csv's default limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(_text_lines(path))
    try:
        # numbered as before (header = 1, then one per row) so fallback ids stay stable
        for number, row in enumerate(reader, 2):
            yield number, row, None
    except csv.Error as exc:
        raise UserError(f"{path}:{reader.line_num}: not valid CSV ({exc}); fix the quoting on that line") from None


def _object_row(number: int, row: object, where: str) -> tuple[int, dict | None, str | None]:
    if isinstance(row, dict):
        return number, row, None
    return number, None, f"{where} {number}: expected a JSON object, found {type(row).__name__}"


def _starts_with(path: str, char: str) -> bool:
    # only the first character matters here; iter_rows reports bytes that are not UTF-8
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        while True:
            chunk = handle.read(4096)
            if not chunk:
                return False
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0] == char


def _json_array_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    text = "".join(_text_lines(path))
    try:
        data = json.loads(text)
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to read; flatten it") from None
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); give a JSON array of objects or JSONL "
                        "(one object per line)") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of objects, found {type(data).__name__}")
    for number, row in enumerate(data, 1):
        yield _object_row(number, row, "item")


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"{path}: reading parquet needs pyarrow; {_EXPORT_EXTRA}") from None
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=512)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield number, row, None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"{path}: not a readable parquet file ({exc})") from None


def _hf_dataset(source: InputSource):
    """The rows of a Hugging Face dataset: a ``save_to_disk`` folder
    (``load_from_disk``), another folder of data files or a dataset name in the
    local cache (``load_dataset``); a dataset with splits needs ``split``
    unless it has just one or a ``train`` split."""
    try:
        import datasets
    except ImportError:
        raise UserError(f"input hf:{source.path} needs the datasets library; {_EXPORT_EXTRA}") from None
    folder = Path(source.path)
    saved = folder.is_dir() and any((folder / name).is_file() for name in ("dataset_dict.json", "state.json"))
    try:
        if saved:
            loaded = datasets.load_from_disk(str(folder))
        elif folder.is_dir():
            loaded = datasets.load_dataset(str(folder))
        else:
            loaded = _load_hub_dataset(datasets, source.path)
    except UserError:
        raise
    except Exception as exc:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ...)
        where = "the folder" if folder.is_dir() else "a folder or a dataset name in the local Hugging Face cache"
        raise UserError(f"input hf:{source.path}: could not load it as {where} ({type(exc).__name__}: {exc}); "
                        "give a folder written by save_to_disk or `aidsafe export --format hf`, or the name "
                        "of a dataset already in the cache") from None
    if isinstance(loaded, datasets.Dataset):
        if source.split not in (None, str(loaded.split or "train")):
            raise UserError(f"input hf:{source.path}: has a single split; drop :{source.split}")
        return loaded
    splits = list(loaded)
    split = source.split or (splits[0] if len(splits) == 1 else "train" if "train" in splits else None)
    if split not in splits:
        wanted = f"no split {source.split!r}" if source.split else "more than one split"
        raise UserError(f"input hf:{source.path}: {wanted}; choose one of {', '.join(splits)}, "
                        f"e.g. hf:{source.path}:{splits[0]}")
    return loaded[split]


#: Seconds the Hub may take to answer before an ``hf:NAME`` missing from the cache fails.
HUB_REACH_TIMEOUT = 5.0


@contextlib.contextmanager
def _hub_offline(datasets_module) -> Iterator[None]:
    """Offline mode for ``datasets`` and ``huggingface_hub`` inside the block
    (both read ``HF_HUB_OFFLINE`` once, at import, into their constants)."""
    from huggingface_hub import constants

    saved = (datasets_module.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets_module.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets_module.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _hub_reachable(name: str) -> str | None:
    """None when the Hub answers within :data:`HUB_REACH_TIMEOUT` seconds,
    else why not (the dataset download would spend half a minute retrying)."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    url = f"{constants.ENDPOINT.rstrip('/')}/api/datasets/{name}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HUB_REACH_TIMEOUT):
            return None
    except urllib.error.HTTPError:
        return None  # it answered (401/404 included): datasets says what is wrong
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def _load_hub_dataset(datasets_module, name: str):
    """``hf:NAME``: the local Hugging Face cache first, offline; the Hub only
    when ``HF_HUB_OFFLINE`` is unset and it answers within
    :data:`HUB_REACH_TIMEOUT` seconds."""
    from huggingface_hub import constants

    offline_env = constants.HF_HUB_OFFLINE
    try:
        with _hub_offline(datasets_module):
            return datasets_module.load_dataset(name)
    except Exception as exc:  # not in the cache (ConnectionError, FileNotFoundError, ...)
        if offline_env:
            raise UserError(f"input hf:{name}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set "
                            f"({type(exc).__name__}); download it first (unset HF_HUB_OFFLINE) or give a folder: "
                            f"hf:PATH") from None
    problem = _hub_reachable(name)
    if problem:
        raise UserError(f"input hf:{name}: not in the local Hugging Face cache, and the Hub "
                        f"({constants.ENDPOINT}) did not answer within {HUB_REACH_TIMEOUT:.0f} s ({problem}); "
                        "connect and rerun, or give a folder written by save_to_disk: hf:PATH") from None
    return datasets_module.load_dataset(name)


def input_identity(source: InputSource) -> dict:
    """What names the input set in provenance and dataset cards: its name
    (the path as given, or ``hf:NAME[:split]``) and its content hash (sha256
    of a file's bytes; a Hugging Face dataset's fingerprint)."""
    out: dict = {"name": str(source)}
    if source.kind == "hf":
        fingerprint = getattr(_hf_dataset(source), "_fingerprint", None)
        if fingerprint:
            out["fingerprint"] = str(fingerprint)
    else:
        digest = hashlib.sha256()
        try:
            with open(source.path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return out
        out["sha256"] = digest.hexdigest()
    return out


def prompt_from_messages(value: list) -> tuple[str | None, list, str | None]:
    """A prompt given as chat messages (TRL's conversational layout, such as
    ``aidsafe export``'s own rows): ``(the last user message, the turns
    before it, None)`` or ``(None, [], why not)``."""
    if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
        return None, [], "is a list, but not of chat messages ({\"role\": ..., \"content\": text})"
    for i in range(len(value) - 1, -1, -1):
        if value[i].get("role") == "user" and value[i]["content"].strip():
            return value[i]["content"], [dict(m) for m in value[:i]], None
    return None, [], "is a list of chat messages without a user message"
def check_id_field(path: str | Path, id_field: str, where: str) -> None:
    """A :class:`UserError` when the first row of the input has no column
    ``id_field`` (an id field the user named: ``where`` says where), naming
    the columns it has and the closest one; records are never numbered by
    row behind a typo."""
    from aidsafe._util.registry import suggest

    for _, row, _ in iter_rows(path):
        if row is None:
            continue
        if id_field not in row:
            columns = [str(k) for k in row]
            raise UserError(f"{where} {id_field!r}: no such column in {path} (columns: "
                            f"{', '.join(columns) or '(none)'}){suggest(id_field, columns)}; name one of them, or "
                            "leave the id field unset to number the records by row")
        return


def read_inputs(path: str | Path, field_name: str = "prompt", id_field: str | None = None,
                keep: list[str] | None = None, limit: int | None = None,
                spec: InputSpec | None = None) -> Iterator[InputRecord]:
    """Stream input records. Ids come from ``id_field`` or the row number;
    ``spec`` (the recipe's ``input:``) names the columns and the label each
    record carries as fields (a row without a named column is unusable)."""
    source = input_source(path)
    identity: dict | None = None
    seen: set[str] = set()
    index = 0
    for number, row, error in iter_rows(source):
        if identity is None:  # once the rows open (an hf: dataset is loaded by then)
            identity = input_identity(source)
        if limit is not None and index >= limit:
            return
        if row is not None:
            problem = _not_unicode(row)
            if problem:
                # The row cannot be written as UTF-8: the record is failed, its
                # text (id, kept fields) carries U+FFFD where the bad characters were.
                row = _replace_surrogates(row)
                error = error or f"row {number}: {problem}; fix the text of that row"
        if row is not None and id_field and row.get(id_field) not in (None, ""):
            rid = str(row[id_field])
        else:
            rid = str(number)
        if rid in seen:
            rid, error = f"{rid}#row{number}", error or f"row {number}: duplicate id {rid!r}; ids must be unique"
        seen.add(rid)
        prompt = None
        turns: list = []
        if row is not None and error is None:
            value = row.get(field_name)
            if isinstance(value, list) and value:
                value, turns, problem = prompt_from_messages(value)
                if problem:
                    error = f"row {number}: field {field_name!r} {problem}"
            if error is not None:
                pass
            elif value is None:
                known = ", ".join(map(str, row)) or "(none)"
                error = (f"row {number}: no field {field_name!r} (fields: {known}); "
                         f"set `input: {{field: NAME}}` in the recipe or pass --field NAME")
            elif not isinstance(value, str) or not value.strip():
                error = f"row {number}: field {field_name!r} must be non-empty text"
            else:
                prompt = value
        meta = {k: row.get(k) for k in (keep or []) if row is not None and k in row}
        if turns:  # the conversation before the last user message
            meta["prompt_turns"] = turns
        fields: dict = {}
        if spec is not None and row is not None and error is None:
            fields, problem = spec.read(row)
            error = f"row {number}: {problem}" if problem else None
        yield InputRecord(index=index, id=rid, prompt=prompt if error is None else None, meta=meta, error=error,
                          fields=fields, source=identity)
        index += 1


_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_unicode(value: object, where: str = "") -> str | None:
    """Why ``value`` (a row, or anything in it) cannot be written as UTF-8, or
    None. A Python string fails only through a lone surrogate (JSON's
    ``"\\ud800"``, or a decoder's ``surrogateescape``)."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        if found:
            name = f"field {where!r}" if where else "a field name"
            return (f"{name} is not valid Unicode text (a lone surrogate \\u{ord(found.group()):04x} at "
                    f"character {found.start() + 1}, which UTF-8 cannot store)")
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            top = where or str(key)
            problem = _not_unicode(key) if isinstance(key, str) else None
            if problem:
                return problem
            problem = _not_unicode(item, _SURROGATE.sub("\ufffd", top))
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for item in value:
            problem = _not_unicode(item, where)
            if problem:
                return problem
    return None


def _replace_surrogates(value):
    """``value`` with every lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_surrogates(v) for v in value]
    return value


def writable_record(record: dict) -> dict:
    """``record`` if it can be written as UTF-8; otherwise a ``failed`` copy
    (lone surrogates replaced by U+FFFD, the reason in ``error``), so one
    hostile string (an input row, a model answer) fails its record instead
    of stopping the run."""
    problem = _not_unicode(record)
    if problem is None:
        return record
    fixed = _replace_surrogates(record)
    fixed["status"] = "failed"
    fixed["error"] = {"type": "InputError" if record.get("error") else "InvalidText",
                      "message": "the record holds text that cannot be written as UTF-8: "
                                 + _SURROGATE.sub("\ufffd", problem), "stage": None}
    return fixed


@dataclass(frozen=True)
class JsonlLine:
    """One record of a JSONL file with where it lies: ``offset`` and
    ``length`` are in bytes, so :func:`read_record_at` can fetch it again
    without reading the file before it."""

    number: int  # 1-based line number
    offset: int
    length: int
    record: dict


def iter_jsonl_lines(path: str | Path, what: str = "records file", start: int = 0,
                     first_number: int = 1) -> Iterator[JsonlLine]:
    """Stream the records of a JSONL file with their byte offsets, from byte
    ``start`` (a line start; ``first_number`` is that line's number). A
    missing file or a line that is not a JSON object is a :class:`UserError`
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {str(path)!r} not found")
    with open(path, "rb") as handle:
        handle.seek(start)
        offset = start
        for number, line in enumerate(handle, first_number):
            length = len(line)
            if line.strip():
                yield JsonlLine(number, offset, length, _parse_record_line(path, number, line))
            offset += length


def _parse_record_line(path: Path, number: int, line: bytes | str) -> dict:
    try:
        record = json.loads(line)
    except RecursionError:
        raise UserError(f"{path}:{number}: JSON nested too deeply to read; records files are the JSONL written "
                        "by `aidsafe run`") from None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise UserError(f"{path}:{number}: not valid JSON ({getattr(exc, 'msg', None) or exc}); records files "
                        "are the JSONL written by `aidsafe run`") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}:{number}: expected a JSON object (one record per line), "
                        f"found {type(record).__name__}")
    return record


def read_record_at(path: str | Path, offset: int, number: int = 0) -> dict:
    """The record on the line starting at byte ``offset`` of ``path`` (an
    offset from :func:`iter_jsonl_lines`); a bad line is a :class:`UserError`."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        return _parse_record_line(Path(path), number, handle.readline())


def iter_jsonl_records(path: str | Path, what: str = "records file") -> Iterator[tuple[int, dict]]:
    """Stream (line number, record) from a JSONL file of output records. A
    missing file or a line that is not a JSON object is a :class:`UserError`
    naming the file and line."""
    for line in iter_jsonl_lines(path, what):
        yield line.number, line.record


def read_records(path: str | Path, what: str = "records file") -> list[dict]:
    """All output records (JSONL, as ``aidsafe run`` writes them) of ``path``,
    read with :func:`iter_jsonl_records`: a missing file or a bad line is a
    :class:`UserError` naming the file and line."""
    return [record for _, record in iter_jsonl_records(path, what)]


def write_records(path: str | Path, records: Iterable[dict]) -> None:
    """Write ``records`` as JSONL to ``path`` atomically (through
    :func:`aidsafe._util.atomic.atomic_write`: readers never see half a file).
    Missing parent folders are created."""
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def count_inputs(path: str | Path) -> int:
    """How many rows :func:`iter_rows` yields for ``path`` (for progress)."""
    source = input_source(path)
    if source.kind == "csv":
        return sum(1 for _ in _csv_rows(source.path))
    if source.kind == "jsonl" or (source.kind == "json" and not _starts_with(source.path, "[")):
        return sum(1 for line in _text_lines(source.path) if line.strip())
    if source.kind == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError(f"{source.path}: reading parquet needs pyarrow; {_EXPORT_EXTRA}") from None
        try:
            return pq.ParquetFile(source.path).metadata.num_rows
        except (OSError, ValueError):
            return 0  # iter_rows reports the bad file
    return sum(1 for _ in iter_rows(source))


class Journal:
    """Append-only record log beside the output (``OUT.journal``).

    Each record is written and flushed at once, so a killed process loses
    nothing (the data is in the kernel). fsync, which only matters for power
    loss, runs at most every ``fsync_every`` seconds and on close: an fsync per
    record would dominate a warm rerun.
    """

    def __init__(self, output: Path, fsync_every: float = 1.0):
        self.output = Path(output)
        self.path = self.output.with_name(self.output.name + ".journal")
        self.fsync_every = fsync_every
        self._lock = threading.Lock()
        self._handle = None
        self._synced = 0.0

    def load(self) -> dict[str, dict]:
        """Records already finished: id -> last record written for it. Starts
        the journal from a previous complete output if there is no journal."""
        if not self.path.exists() and self.output.exists():
            self.path.write_bytes(self.output.read_bytes())
        done: dict[str, dict] = {}
        if not self.path.exists():
            return done
        with open(self.path, "rb+") as handle:
            data = handle.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                handle.truncate(end)  # a torn last line from a crash
            for line in io.BytesIO(data[:end]):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "id" in record:
                    done[str(record["id"])] = _summary(record)
        return done

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
        with self._lock:
            if self._handle is None:
                self._handle = open(self.path, "ab")
            self._handle.write(line)
            self._handle.flush()
            now = time.monotonic()
            if now - self._synced >= self.fsync_every:
                os.fsync(self._handle.fileno())
                self._synced = now

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
                self._handle = None

    def finalize(self, order: list[str], remove: bool) -> int:
        """Write the output in ``order`` (ids) atomically from the journal's
        last record per id. Returns how many records were written."""
        self.close()
        offsets: dict[str, int] = {}
        if self.path.exists():
            with open(self.path, "rb") as handle:
                position = 0
                for line in handle:
                    try:
                        rid = str(json.loads(line)["id"])
                        offsets[rid] = position
                    except (ValueError, KeyError, TypeError):
                        pass
                    position += len(line)
        written = 0
        with atomic_write(self.output, "wb") as out, \
                open(self.path, "rb") if self.path.exists() else io.BytesIO() as src:
            for rid in order:
                if rid not in offsets:
                    continue
                src.seek(offsets[rid])
                out.write(src.readline())
                written += 1
        if remove:
            self.path.unlink(missing_ok=True)
        return written


def _summary(record: dict) -> dict:
    provenance = record.get("provenance") if isinstance(record.get("provenance"), dict) else {}
    # what resume compares: the recipe (with its prompts and pools), the prompt, and what else makes
    # the output (the models' identities, the policy text), so that one output never mixes runs
    return {"status": record.get("status"), "recipe_hash": provenance.get("recipe_hash"),
            "prompt": record.get("prompt"), "models": provenance.get("models"),
            "policy_hash": provenance.get("policy_hash")}
