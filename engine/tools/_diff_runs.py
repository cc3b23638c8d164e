"""Diff of two run outputs of ``aidsafe run``.

:func:`diff_runs` compares two output files record by record (matched by
``id``) and in aggregate: statuses, stop reasons, rounds, turns, CoT length,
responses that went from refusal to compliance or back (by default through
:func:`aidsafe.evaluation.is_refusal`, the project's one string-match
refusal classifier), judge scores. It returns a :class:`RunDiff`;
:func:`render_run_diff` turns it into text, ``to_dict()`` into JSON.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from aidsafe._util.errors import UserError
from aidsafe._util.hashing import sha256_of
from aidsafe.evaluation._refusal import is_refusal
from aidsafe.tools._diff_common import FieldChange
from aidsafe.tools._diff_common import short as _short


@dataclass(frozen=True)
class RefusalClassifier:
    """How run diffs decide refusal vs compliance: a label shown next to
    every refusal figure, and a function of one output record (it may read
    ``prompt`` and ``response``, or a label a judge stored in the record)
    returning True (refusal), False (compliance) or None (cannot tell).
    It is only asked about records with a non-empty response."""

    label: str
    is_refusal: Callable[[dict], bool | None]


def _string_match(record: dict) -> bool:
    return is_refusal(record.get("response"))


# The one place to swap the classifier (e.g. for a refusal judge from
# aidsafe.evaluation): diff_runs uses this unless given another.
DEFAULT_REFUSAL = RefusalClassifier("string match", _string_match)


@dataclass(frozen=True)
class RecordSummary:
    """What a run diff keeps of one record (the full record is not held in
    memory, so large outputs can be compared)."""

    id: str
    status: str | None
    stop_reason: str | None
    rounds: int | None
    turns: int | None
    thoughts: int
    cot_chars: int
    cot_hash: str
    intents_hash: str
    response_hash: str
    has_response: bool
    refusal: bool | None  # None: no response to classify
    scores: dict


@dataclass(frozen=True)
class RecordChange:
    """One record (same id in A and B) whose outcome differs."""

    id: str
    fields: list[FieldChange]


@dataclass(frozen=True)
class ScoreStats:
    mean: float | None
    scored: int
    unscored: int  # records that carry the metric with a null (unparseable/out-of-range) verdict


@dataclass(frozen=True)
class RunStats:
    """Aggregates of one output file."""

    path: str
    records: int
    statuses: dict
    stop_reasons: dict
    mean_rounds: float | None  # over records with a deliberation
    mean_turns: float | None
    mean_thoughts: float | None  # over ok records
    mean_cot_chars: float | None
    refusals: int  # ok records whose response looks like a refusal
    classified: int  # ok records with a response
    scores: dict  # metric -> ScoreStats


@dataclass(frozen=True)
class PairedScore:
    """A metric over records scored (non-null) in both A and B."""

    metric: str
    n: int
    mean_a: float | None
    mean_b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.mean_a is None or self.mean_b is None else self.mean_b - self.mean_a


@dataclass(frozen=True)
class RunDiff:
    """Per-record and aggregate differences of two run outputs."""

    a: RunStats
    b: RunStats
    refusal_method: str
    common: int
    only_a: list[str]
    only_b: list[str]
    changed: list[RecordChange]
    refusal_to_compliance: list[str]
    compliance_to_refusal: list[str]
    paired_scores: list[PairedScore]

    @property
    def same(self) -> bool:
        return not (self.only_a or self.only_b or self.changed)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["same"] = self.same
        for item, paired in zip(data["paired_scores"], self.paired_scores):
            item["delta"] = paired.delta
        return data


def _read_run(path: str | Path, refusal: RefusalClassifier) -> dict[str, RecordSummary]:
    from aidsafe.runtime._records import iter_jsonl_records

    out: dict[str, RecordSummary] = {}
    for number, record in iter_jsonl_records(path, "run output"):
        if record.get("id") in (None, ""):
            raise UserError(f"{path}:{number}: record has no `id`; records are matched by id, "
                            "so every line needs one (as `aidsafe run` writes them)")
        rid = str(record["id"])
        if rid in out:
            raise UserError(f"{path}:{number}: duplicate id {rid!r}; ids must be unique to match records")
        out[rid] = _summarize(rid, record, refusal)
    return out


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _summarize(rid: str, record: dict, refusal: RefusalClassifier) -> RecordSummary:
    delib = record.get("deliberation") if isinstance(record.get("deliberation"), dict) else {}
    cot = record.get("cot") if isinstance(record.get("cot"), list) else []
    response = record.get("response") if isinstance(record.get("response"), str) else ""
    scores = record.get("scores") if isinstance(record.get("scores"), dict) else {}
    has_response = bool(response.strip())
    return RecordSummary(
        id=rid, status=record.get("status"),
        stop_reason=record.get("stop_reason", delib.get("stop_reason")),
        rounds=_int_or_none(delib.get("rounds")), turns=_int_or_none(delib.get("turns")),
        thoughts=len(cot), cot_chars=sum(len(str(t)) for t in cot), cot_hash=sha256_of(cot),
        intents_hash=sha256_of(record.get("intents")), response_hash=sha256_of(response),
        has_response=has_response, refusal=refusal.is_refusal(record) if has_response else None,
        scores={str(k): v for k, v in scores.items()},
    )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _is_score(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _stats(path: str | Path, records: dict[str, RecordSummary]) -> RunStats:
    values = list(records.values())
    ok = [r for r in values if r.status == "ok"]
    delib = [r for r in values if r.rounds is not None]
    metrics = sorted({m for r in values for m in r.scores})
    scores = {}
    for metric in metrics:
        carried = [r.scores[metric] for r in values if metric in r.scores]
        numbers = [v for v in carried if _is_score(v)]
        scores[metric] = ScoreStats(_mean(numbers), len(numbers), len(carried) - len(numbers))
    classified = [r for r in ok if r.refusal is not None]
    return RunStats(
        path=str(path), records=len(values),
        statuses=dict(sorted(Counter(str(r.status) for r in values).items())),
        stop_reasons=dict(sorted(Counter(r.stop_reason for r in values if r.stop_reason).items())),
        mean_rounds=_mean([r.rounds for r in delib]),
        mean_turns=_mean([r.turns for r in delib if r.turns is not None]),
        mean_thoughts=_mean([r.thoughts for r in ok]), mean_cot_chars=_mean([r.cot_chars for r in ok]),
        refusals=sum(1 for r in classified if r.refusal), classified=len(classified), scores=scores,
    )


def _record_changes(ra: RecordSummary, rb: RecordSummary) -> list[FieldChange]:
    out = []
    for name in ("status", "stop_reason", "rounds", "turns"):
        old, new = getattr(ra, name), getattr(rb, name)
        if old != new:
            out.append(FieldChange(name, "changed", old, new))
    if ra.intents_hash != rb.intents_hash:
        out.append(FieldChange("intents", "changed"))
    if ra.cot_hash != rb.cot_hash:
        out.append(FieldChange("cot", "changed", {"thoughts": ra.thoughts, "chars": ra.cot_chars},
                               {"thoughts": rb.thoughts, "chars": rb.cot_chars}))
    if ra.response_hash != rb.response_hash:
        out.append(FieldChange("response", "changed"))
    if ra.refusal is not None and rb.refusal is not None and ra.refusal != rb.refusal:
        out.append(FieldChange("refusal", "changed", ra.refusal, rb.refusal))
    for metric in sorted(set(ra.scores) | set(rb.scores)):
        old, new = ra.scores.get(metric), rb.scores.get(metric)
        if metric not in rb.scores:
            out.append(FieldChange(f"scores.{metric}", "removed", old=old))
        elif metric not in ra.scores:
            out.append(FieldChange(f"scores.{metric}", "added", new=new))
        elif old != new:
            out.append(FieldChange(f"scores.{metric}", "changed", old, new))
    return out


def diff_runs(path_a: str | Path, path_b: str | Path, refusal: RefusalClassifier | None = None) -> RunDiff:
    """Compare two output files of ``aidsafe run``, records matched by ``id``.

    A record counts as changed when its status, stop reason, rounds, turns,
    intents, CoT, response or scores differ (timings and provenance do not).
    Refusal flips are counted over records with a non-empty response on both
    sides, using ``refusal`` (default: :data:`DEFAULT_REFUSAL`, a string match).
    """
    refusal = refusal or DEFAULT_REFUSAL
    recs_a, recs_b = _read_run(path_a, refusal), _read_run(path_b, refusal)
    common = [rid for rid in recs_a if rid in recs_b]
    changed, to_comply, to_refuse = [], [], []
    for rid in common:
        ra, rb = recs_a[rid], recs_b[rid]
        fields = _record_changes(ra, rb)
        if fields:
            changed.append(RecordChange(rid, fields))
        if ra.refusal is True and rb.refusal is False:
            to_comply.append(rid)
        elif ra.refusal is False and rb.refusal is True:
            to_refuse.append(rid)
    metrics = sorted({m for r in recs_a.values() for m in r.scores} & {m for r in recs_b.values() for m in r.scores})
    paired = []
    for metric in metrics:
        pairs = [(recs_a[rid].scores.get(metric), recs_b[rid].scores.get(metric)) for rid in common]
        pairs = [(x, y) for x, y in pairs if _is_score(x) and _is_score(y)]
        paired.append(PairedScore(metric, len(pairs), _mean([x for x, _ in pairs]), _mean([y for _, y in pairs])))
    return RunDiff(
        a=_stats(path_a, recs_a), b=_stats(path_b, recs_b), refusal_method=refusal.label, common=len(common),
        only_a=[rid for rid in recs_a if rid not in recs_b], only_b=[rid for rid in recs_b if rid not in recs_a],
        changed=changed, refusal_to_compliance=to_comply, compliance_to_refusal=to_refuse, paired_scores=paired,
    )


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ids(ids: list[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def _record_change_text(change: FieldChange, method: str) -> str:
    if change.path == "refusal":
        return f"{'refusal -> compliance' if change.old else 'compliance -> refusal'} ({method})"
    if change.path == "cot":
        return (f"cot changed ({change.old['thoughts']} -> {change.new['thoughts']} thoughts, "
                f"{change.old['chars']} -> {change.new['chars']} chars)")
    if change.path in ("intents", "response"):
        return f"{change.path} changed"
    if change.path.startswith("scores.") and change.change == "changed":
        # A null score is a verdict that could not be parsed or was out of range.
        def show(value):
            return "unscored" if value is None else _short(value)

        return f"{change.path}: {show(change.old)} -> {show(change.new)}"
    return change.text()


def render_run_diff(diff: RunDiff, max_records: int = 20) -> str:
    """Human-readable text of a :class:`RunDiff`; at most ``max_records``
    per-record lines (0: none)."""
    a, b, method = diff.a, diff.b, diff.refusal_method
    lines = [f"run diff: A = {a.path} ({a.records} records)", f"          B = {b.path} ({b.records} records)",
             f"records: {diff.common} in both, {len(diff.only_a)} only in A, {len(diff.only_b)} only in B"]
    if diff.only_a:
        lines.append(f"  only in A: {_ids(diff.only_a)}")
    if diff.only_b:
        lines.append(f"  only in B: {_ids(diff.only_b)}")

    rows: list[tuple[str, str, str]] = []
    for status in sorted(set(a.statuses) | set(b.statuses)):
        rows.append((f"status {status}", str(a.statuses.get(status, 0)), str(b.statuses.get(status, 0))))
    for reason in sorted(set(a.stop_reasons) | set(b.stop_reasons)):
        rows.append((f"stop {reason}", str(a.stop_reasons.get(reason, 0)), str(b.stop_reasons.get(reason, 0))))
    rows += [("mean rounds", _num(a.mean_rounds), _num(b.mean_rounds)),
             ("mean turns", _num(a.mean_turns), _num(b.mean_turns)),
             ("mean CoT thoughts (ok)", _num(a.mean_thoughts), _num(b.mean_thoughts)),
             ("mean CoT chars (ok)", _num(a.mean_cot_chars, 0), _num(b.mean_cot_chars, 0)),
             (f"refusals ({method}, ok)", f"{a.refusals}/{a.classified}", f"{b.refusals}/{b.classified}")]
    for metric in sorted(set(a.scores) | set(b.scores)):
        sa, sb = a.scores.get(metric), b.scores.get(metric)

        def cell(s):
            return "-" if s is None else f"{_num(s.mean)} (n={s.scored}" + (f", {s.unscored} unscored)" if s.unscored else ")")

        rows.append((f"score {metric}", cell(sa), cell(sb)))
    width = max(len(r[0]) for r in rows)
    col = max(max(len(r[1]) for r in rows), 1)
    lines.append("")
    lines.append(f"  {'':<{width}}  {'A':<{col}}  B")
    lines += [f"  {label:<{width}}  {va:<{col}}  {vb}" for label, va, vb in rows]

    if diff.paired_scores:
        lines.append("")
        lines.append("scores over records scored in both:")
        for p in diff.paired_scores:
            delta = "" if p.delta is None else f" ({p.delta:+.2f})"
            lines.append(f"  {p.metric}: n={p.n}  A {_num(p.mean_a)}  B {_num(p.mean_b)}{delta}")

    lines.append("")
    lines.append(f"refusal -> compliance ({method}): {len(diff.refusal_to_compliance)}"
                 + (f": {_ids(diff.refusal_to_compliance)}" if diff.refusal_to_compliance else ""))
    lines.append(f"compliance -> refusal ({method}): {len(diff.compliance_to_refusal)}"
                 + (f": {_ids(diff.compliance_to_refusal)}" if diff.compliance_to_refusal else ""))

    lines.append("")
    if not diff.changed:
        lines.append(f"per record: no differences in the {diff.common} common record(s)")
    else:
        shown = diff.changed[:max_records] if max_records else []
        lines.append(f"per record: {len(diff.changed)} of {diff.common} common record(s) differ"
                     + (f" (first {len(shown)})" if len(shown) < len(diff.changed) else "") + ":")
        for change in shown:
            lines.append(f"  {change.id}: " + "; ".join(_record_change_text(c, method) for c in change.fields))
    return "\n".join(lines)


__all__ = ["DEFAULT_REFUSAL", "PairedScore", "RecordChange", "RecordSummary", "RefusalClassifier", "RunDiff",
           "RunStats", "ScoreStats", "diff_runs", "render_run_diff"]
