"""``aidsafe eval``: judge output records, then summarise the scores.

Every record is scored by the pointwise judges of a judges file (cached model
calls, so a rerun is free); the scores are written into a copy of the records
(``OUT.scored.jsonl``). The summary per metric is the mean over scored
records with a 95% percentile-bootstrap confidence interval (fixed seed:
the same scores always give the same interval), and the count of records
that were unscored (the judge's answer was unusable) or skipped (failed or
filtered records).

Two files are compared metric by metric: the difference of means (second
minus first) with a bootstrap interval that is *paired* over the record ids
both files scored (resampling ids, so per-prompt difficulty cancels) and
unpaired otherwise. Pairwise judges run on the shared ids in both orders.

Records that carry a ``label`` (a recipe with ``input.label``) also get
``behavior``, next to the judge scores: the share of the ``ok`` records
labeled ``answer`` or ``decline`` whose response does what the label asks,
by the string-match classifier (:func:`behavior_agrees`; no judge call),
with the same bootstrap interval. Records labeled ``unknown`` are not
counted; failed and filtered ones are skipped, as for the judges.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from aidsafe._util.errors import UserError
from aidsafe._util.paths import default_cache_dir
from aidsafe._util.progress import Progress
from aidsafe.config._policies import PolicySet
from aidsafe.evaluation._judges import JudgePanel, PairVerdict, load_judges, score_records
from aidsafe.evaluation._refusal import behavior_agrees
from aidsafe.evaluation._stats import CONFIDENCE, SEED, Interval, bootstrap_difference, bootstrap_mean
from aidsafe.evaluation._tasks import run_tasks
from aidsafe.models._engine import UsageMeter, metering
from aidsafe.runtime._records import read_records, write_records
from aidsafe.store._cache import Cache

BEHAVIOR = "behavior"
BEHAVIOR_LABEL = "behavior (by string match)"
BEHAVIOR_NOTE = ("behavior: share of the records labeled answer/decline whose response does what the label asks "
                 "(answer: full compliance, decline: full refusal), by string match, not a judge; records labeled "
                 "unknown are not counted, failed/filtered ones are skipped")


# -------------------------------------------------------------- summaries

@dataclass
class MetricSummary:
    """One metric over one file's scored records."""

    metric: str
    interval: Interval
    unscored: int = 0  # the judge answered but not usably, or the call failed
    skipped: int = 0  # failed/filtered records, or missing inputs
    description: str = ""

    @property
    def n(self) -> int:
        return self.interval.n

    def to_dict(self) -> dict:
        return {"metric": self.metric, **self.interval.to_dict(), "unscored": self.unscored, "skipped": self.skipped}


def summarize(records: list[dict], metrics: list[str], descriptions: dict[str, str] | None = None,
              seed: int = SEED) -> list[MetricSummary]:
    """Mean and interval per metric from records' ``scores``/``judge``."""
    out = []
    for metric in metrics:
        values, unscored, skipped = [], 0, 0
        for record in records:
            score = (record.get("scores") or {}).get(metric)
            status = ((record.get("judge") or {}).get(metric) or {}).get("status")
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                values.append(score)
            elif status == "skipped" or status is None:
                skipped += 1
            else:
                unscored += 1
        out.append(MetricSummary(metric, bootstrap_mean(values, seed=seed), unscored, skipped,
                                 (descriptions or {}).get(metric, "")))
    return out


@dataclass
class MetricComparison:
    """One metric across two files: each side's summary and the difference."""

    metric: str
    first: MetricSummary
    second: MetricSummary
    difference: Interval
    paired: bool

    def to_dict(self) -> dict:
        return {"metric": self.metric, "first": self.first.to_dict(), "second": self.second.to_dict(),
                "difference": self.difference.to_dict(), "paired": self.paired}


def _scores_by_id(records: list[dict], metric: str) -> dict[str, float]:
    out = {}
    for record in records:
        score = (record.get("scores") or {}).get(metric)
        if record.get("id") is not None and isinstance(score, (int, float)) and not isinstance(score, bool):
            out[str(record["id"])] = score
    return out


def _comparison(metric: str, s1: MetricSummary, s2: MetricSummary, a: dict[str, float], b: dict[str, float],
                seed: int) -> MetricComparison:
    """``b - a`` (values by record id): paired over the shared ids when there
    are at least two, else unpaired."""
    shared = [i for i in a if i in b]
    if len(shared) >= 2:
        diff = bootstrap_difference([a[i] for i in shared], [b[i] for i in shared], paired=True, seed=seed)
        return MetricComparison(metric, s1, s2, diff, True)
    return MetricComparison(metric, s1, s2, bootstrap_difference(list(a.values()), list(b.values()), paired=False,
                                                                 seed=seed), False)


def compare(first: list[dict], second: list[dict], metrics: list[str], descriptions: dict[str, str] | None = None,
            seed: int = SEED) -> list[MetricComparison]:
    """Per metric: both summaries and ``second - first`` (paired over the ids
    both files scored when there are at least two, else unpaired)."""
    summaries = zip(summarize(first, metrics, descriptions, seed), summarize(second, metrics, descriptions, seed))
    return [_comparison(metric, s1, s2, _scores_by_id(first, metric), _scores_by_id(second, metric), seed)
            for metric, (s1, s2) in zip(metrics, summaries)]


# -------------------------------------------------------------- behavior

def has_labels(records: list[dict]) -> bool:
    """Whether the records carry a ``label`` (their recipe read one)."""
    return any(record.get("label") is not None for record in records)


def behavior_by_id(records: list[dict]) -> dict[str, float]:
    """1.0 / 0.0 per ``ok`` record labeled answer or decline: whether its
    response does what the label asks (:func:`behavior_agrees`)."""
    out = {}
    for position, record in enumerate(records):
        if record.get("status", "ok") != "ok":
            continue
        agrees = behavior_agrees(record.get("label"), record.get("response"))
        if agrees is not None:
            key = str(record["id"]) if record.get("id") is not None else f"#{position}"
            out[key] = 1.0 if agrees else 0.0
    return out


def summarize_behavior(records: list[dict], seed: int = SEED) -> MetricSummary:
    """``behavior`` over ``records``: the agreement rate with its bootstrap
    interval (``n``: the ok records labeled answer or decline); ``skipped``
    counts the labeled records that failed or were filtered."""
    values = behavior_by_id(records)
    skipped = sum(1 for r in records if r.get("status", "ok") != "ok"
                  and str(r.get("label") or "").lower() in ("answer", "decline"))
    return MetricSummary(BEHAVIOR, bootstrap_mean(list(values.values()), seed=seed), 0, skipped, BEHAVIOR_NOTE)


def compare_behavior(first: list[dict], second: list[dict], seed: int = SEED) -> MetricComparison:
    """``behavior`` of two record sets and the difference (second - first),
    paired over the ids both have when there are at least two."""
    return _comparison(BEHAVIOR, summarize_behavior(first, seed), summarize_behavior(second, seed),
                       behavior_by_id(first), behavior_by_id(second), seed)


@dataclass
class PairwiseSummary:
    """A pairwise judge over the ids two files share."""

    judge: str
    outcomes: dict[str, int]  # first, second, tie, inconsistent, unscored
    second_win_rate: Interval  # second wins 1, ties and inconsistent 0.5, first wins 0

    def to_dict(self) -> dict:
        return {"judge": self.judge, "outcomes": self.outcomes, "second_win_rate": self.second_win_rate.to_dict()}


def summarize_pairs(judge: str, verdicts: list[PairVerdict], seed: int = SEED) -> PairwiseSummary:
    outcomes = {k: 0 for k in ("first", "second", "tie", "inconsistent", "unscored")}
    values = []
    for verdict in verdicts:
        outcomes[verdict.outcome] += 1
        if verdict.outcome != "unscored":
            values.append({"first": 0.0, "second": 1.0}.get(verdict.outcome, 0.5))
    return PairwiseSummary(judge, outcomes, bootstrap_mean(values, seed=seed))


# -------------------------------------------------------------- the command

@dataclass
class EvalResult:
    """Everything ``aidsafe eval`` computed."""

    files: list[str]
    scored_paths: list[str]
    summaries: list[list[MetricSummary]]
    comparisons: list[MetricComparison] = field(default_factory=list)
    pairwise: list[PairwiseSummary] = field(default_factory=list)
    usage: UsageMeter = field(default_factory=UsageMeter)
    judges: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    scale: tuple[int, int] = (1, 5)  # the widest pointwise scale, for charts
    # per file: `behavior` (label agreement by string match), None when its records carry no label
    behavior: list[MetricSummary | None] = field(default_factory=list)
    behavior_comparison: MetricComparison | None = None  # two files, both labeled

    def to_dict(self) -> dict:
        return {"files": self.files, "scored": self.scored_paths,
                "summaries": [[s.to_dict() for s in file] for file in self.summaries],
                "comparisons": [c.to_dict() for c in self.comparisons],
                "behavior": [b.to_dict() if b is not None else None for b in self.behavior],
                "behavior_comparison": self.behavior_comparison.to_dict() if self.behavior_comparison else None,
                "pairwise": [p.to_dict() for p in self.pairwise], "judges": self.judges,
                "models": self.usage.to_dict(), "warnings": self.warnings}

    def tables(self):
        """The results as :class:`engine.report.Table` objects."""
        from aidsafe.evaluation._report import Table

        ci = f"{int(CONFIDENCE * 100)}% CI"
        tables = []
        if not self.comparisons and not self.behavior_comparison:
            for index, (path, summary) in enumerate(zip(self.files, self.summaries)):
                rows = [[s.metric, str(s.n), _fmt(s.interval.mean), _fmt_ci(s.interval), str(s.unscored),
                         str(s.skipped)] for s in summary]
                behavior = self.behavior[index] if index < len(self.behavior) else None
                notes = []
                if behavior is not None:
                    b = behavior.interval
                    rows.append([BEHAVIOR_LABEL, str(b.n), _fmt(b.mean), _fmt_ci(b), "-", str(behavior.skipped)])
                    notes.append(BEHAVIOR_NOTE)
                tables.append(Table(f"Judge scores: {Path(path).name}",
                                    ["metric", "n", "mean", ci, "unscored", "skipped"], rows, notes=notes))
        else:
            n1, n2 = Path(self.files[0]).name, Path(self.files[1]).name
            rows = []
            for c in self.comparisons:
                kind = f"paired, n={c.difference.n}" if c.paired else "unpaired"
                rows.append([c.metric, f"{_fmt(c.first.interval.mean)} {_fmt_ci(c.first.interval)}".strip(),
                             f"{_fmt(c.second.interval.mean)} {_fmt_ci(c.second.interval)}".strip(),
                             _fmt(c.difference.mean, signed=True), _fmt_ci(c.difference, signed=True), kind,
                             f"{c.first.unscored} / {c.second.unscored}"])
            notes = [f"n scored: {n1} " + ", ".join(str(c.first.n) for c in self.comparisons)
                     + f"; {n2} " + ", ".join(str(c.second.n) for c in self.comparisons)]
            b = self.behavior_comparison
            if b is not None:
                kind = f"paired, n={b.difference.n}" if b.paired else "unpaired"
                rows.append([BEHAVIOR_LABEL, f"{_fmt(b.first.interval.mean)} {_fmt_ci(b.first.interval)}".strip(),
                             f"{_fmt(b.second.interval.mean)} {_fmt_ci(b.second.interval)}".strip(),
                             _fmt(b.difference.mean, signed=True), _fmt_ci(b.difference, signed=True), kind, "-"])
                notes += [f"{BEHAVIOR} n (labeled ok records): {n1} {b.first.n}; {n2} {b.second.n}", BEHAVIOR_NOTE]
            tables.append(Table(f"Judge scores: {n1} vs {n2}",
                                ["metric", f"{n1} mean [{ci}]", f"{n2} mean [{ci}]", "diff (2nd - 1st)",
                                 f"diff {ci}", "bootstrap", "unscored"], rows, notes=notes))
        for p in self.pairwise:
            o = p.outcomes
            n1, n2 = Path(self.files[0]).name, Path(self.files[1]).name
            tables.append(Table(f"Pairwise preference ({p.judge}), both orders", [
                f"{n1} wins", f"{n2} wins", "tie", "inconsistent", "unscored", f"{n2} win rate [{ci}]"],
                [[str(o["first"]), str(o["second"]), str(o["tie"]), str(o["inconsistent"]), str(o["unscored"]),
                  p.second_win_rate.format(2)]],
                notes=["a win counts only when both orders (each record shown first once) agree; "
                       "inconsistent verdicts (position bias) count as ties in the win rate"]))
        return tables

    def charts(self):
        """Bar charts of the means with their intervals."""
        from aidsafe.evaluation._report import Chart

        if not self.summaries or not self.summaries[0]:
            return []
        labels = [s.metric for s in self.summaries[0]]
        series = {Path(path).name: [(s.interval.mean, s.interval.low, s.interval.high) for s in summary]
                  for path, summary in zip(self.files, self.summaries)}
        return [Chart("Judge scores (mean, 95% CI)", labels, series, ylabel="score", ylim=self.scale)]

    def lines(self) -> list[str]:
        out = []
        for model, u in sorted(self.usage.by_model.items()):
            out.append(f"judge model {model}: {u.calls} call(s) ({u.cached_calls} cached), "
                       f"{u.input_tokens} in / {u.output_tokens} out tokens")
        for path in self.scored_paths:
            out.append(f"scores written to {path}")
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _fmt_ci(interval: Interval, signed: bool = False) -> str:
    if interval.mean is None:
        return ""
    return f"[{_fmt(interval.low, signed)}, {_fmt(interval.high, signed)}]"


def scored_path(path: str | Path, output_dir: str | Path | None = None) -> Path:
    """``out.jsonl`` -> ``out.scored.jsonl`` (beside it, or in ``output_dir``)."""
    path = Path(path)
    name = (path.name[:-len(".jsonl")] if path.name.endswith(".jsonl") else path.name) + ".scored.jsonl"
    return (Path(output_dir) if output_dir else path.parent) / name


def evaluate(paths: Sequence[str | Path], judges: str | Path = "judges", judge_model: str | None = None,
             metrics: Sequence[str] | None = None, pairwise: Sequence[str] | None = None,
             output_dir: str | Path | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
             workers: int | None = None, api_base: str | None = None, progress: bool = False,
             seed: int = SEED, api_key_env: str | None = None) -> EvalResult:
    """Score one or two record files with the pointwise judges (``metrics``,
    default all), write ``*.scored.jsonl`` copies, and summarise. With two
    files, also compare them and run the pairwise judges (``pairwise``,
    default all) on the ids they share."""
    started = time.perf_counter()
    if not 1 <= len(paths) <= 2:
        raise UserError(f"eval takes one records file, or two to compare; got {len(paths)}")
    if len(paths) == 2 and Path(paths[0]).resolve() == Path(paths[1]).resolve():
        raise UserError(f"{paths[0]} is given twice; compare two different record files")
    judge_set = load_judges(judges)
    pointwise = judge_set.names("pointwise")
    metrics = list(metrics) if metrics else pointwise
    for name in metrics:
        kind = judge_set.get(name).kind
        if kind != "pointwise":
            where = "pairwise judges run when two files are given" if kind == "pairwise" else \
                "it is used by `aidsafe bench`"
            raise UserError(f"--metric {name}: judge {name!r} is {kind}; eval scores with pointwise judges "
                            f"({', '.join(pointwise)}); {where}")
    pair_names = [] if len(paths) < 2 else (list(pairwise) if pairwise is not None else judge_set.names("pairwise"))
    for name in pair_names:
        if judge_set.get(name).kind != "pairwise":
            raise UserError(f"--pairwise {name}: judge {name!r} is {judge_set.judges[name].kind}, not pairwise")
    record_sets = [read_records(p) for p in paths]
    uses_policies = any("policies" in judge_set.judges[m].inputs for m in metrics + pair_names)
    policy_set = recipe_policies(record_sets[0], paths[0]) \
        if uses_policies and judge_set.policies == "recipe" else None
    cache = Cache(cache_dir or default_cache_dir(), enabled=use_cache)
    panel = JudgePanel.build(judge_set, cache, judge_model=judge_model, api_base=api_base, api_key_env=api_key_env,
                             policy_set=policy_set)
    workers = workers or min((h.spec.concurrency or 1) for h in panel.models.values())
    result = EvalResult(files=[str(p) for p in paths], scored_paths=[], summaries=[], judges=panel.identity())
    other = [n for n in judge_set.names("rubric", "label") if n not in metrics]
    if other:
        # never skipped without a word: they score benchmark answers, not records
        result.warnings.append(f"judge(s) {', '.join(f'{n} ({judge_set.judges[n].kind})' for n in other)} not run: "
                               "eval scores records with pointwise judges; rubric and label judges grade "
                               "`aidsafe bench` answers (bench --judge-model)")
    descriptions = {n: j.description for n, j in judge_set.judges.items()}
    scales = [judge_set.judges[m].scale for m in metrics]
    result.scale = (min(s[0] for s in scales), max(s[1] for s in scales))
    total = sum(len(r) for r in record_sets) * len(metrics)
    bar = Progress(total + 2 * len(pair_names) * _shared_count(record_sets), progress, unit="call", desc="judging")
    scored_sets = []
    try:
        with metering(result.usage):
            for path, records in zip(paths, record_sets):
                _check_policy(records, panel, path, result.warnings, uses_policies=any(
                    "policies" in judge_set.judges[m].inputs for m in metrics))
                scored = score_records(panel, records, metrics, workers, bar.tick)
                scored_sets.append(scored)
            pair_verdicts = {}
            if pair_names:
                first = {str(r.get("id")): i for i, r in enumerate(scored_sets[0])}
                second = {str(r.get("id")): i for i, r in enumerate(scored_sets[1])}
                shared = [i for i in first if i in second]
                if not shared:
                    result.warnings.append("the two files share no record ids: pairwise judges were not run")
                for name in pair_names:
                    tasks = [lambda i=i, n=name: panel.compare(n, scored_sets[0][first[i]], scored_sets[1][second[i]])
                             for i in shared]
                    verdicts = run_tasks(tasks, workers, lambda: (bar.tick(), bar.tick()))
                    pair_verdicts[name] = verdicts
                    for record_id, verdict in zip(shared, verdicts):
                        _attach_pair(scored_sets[0][first[record_id]], name, verdict, paths[1], mine="first")
                        _attach_pair(scored_sets[1][second[record_id]], name, verdict, paths[0], mine="second")
                    if shared:
                        result.pairwise.append(summarize_pairs(name, verdicts, seed))
    finally:
        bar.close()
        cache.close()
    for path, scored in zip(paths, scored_sets):
        out = scored_path(path, output_dir)
        if out.resolve() == Path(path).resolve():
            raise UserError(f"{path}: the scored copy would overwrite the input; pass --output-dir")
        write_records(out, scored)
        result.scored_paths.append(str(out))
        result.summaries.append(summarize(scored, metrics, descriptions, seed))
    result.behavior = [summarize_behavior(records, seed) if has_labels(records) else None for records in record_sets]
    if len(paths) == 2:
        result.comparisons = compare(scored_sets[0], scored_sets[1], metrics, descriptions, seed)
        if all(b is not None for b in result.behavior):
            result.behavior_comparison = compare_behavior(record_sets[0], record_sets[1], seed)
    result.seconds = time.perf_counter() - started
    return result


def _shared_count(record_sets: list[list[dict]]) -> int:
    if len(record_sets) < 2:
        return 0
    return len({str(r.get("id")) for r in record_sets[0]} & {str(r.get("id")) for r in record_sets[1]})


def _attach_pair(record: dict, judge: str, verdict: PairVerdict, other: str | Path, mine: str) -> None:
    """Record a pairwise outcome from this record's point of view."""
    theirs = "second" if mine == "first" else "first"
    outcome = {mine: "win", theirs: "loss"}.get(verdict.outcome, verdict.outcome)
    record.setdefault("pairwise", {})[judge] = {"against": str(other), "outcome": outcome,
                                                "this_was": mine, "calls": verdict.calls}


def recipe_policies(records: list[dict], path) -> PolicySet:
    """The policies ``records`` were made with, for a judges file's
    ``policies: recipe``: the recipe their provenance names, loaded again,
    whose policy text must still be the one the records were made under."""
    from aidsafe._util import paths as project_paths
    from aidsafe.config._recipe import load_recipe

    provenance = next((r["provenance"] for r in records if isinstance(r.get("provenance"), dict)
                       and r["provenance"].get("recipe")), None)
    fix = "name the policy set in the judges file instead (e.g. `policies: aidsafe`)"
    if provenance is None:
        raise UserError(f"{path}: `policies: recipe` reads the policies from the records' provenance, and these "
                        f"records have none (not written by `aidsafe run`); {fix}")
    ref = provenance.get("recipe_file") or provenance["recipe"]
    candidate = Path(ref)
    if not candidate.is_absolute() and not candidate.is_file() and (project_paths.project_root() / ref).is_file():
        candidate = project_paths.project_root() / ref
    try:
        policy_set = load_recipe(candidate).load_policies()
    except UserError as exc:
        raise UserError(f"{path}: `policies: recipe`: the records were made by recipe {ref!r}, which cannot be "
                        f"read here ({str(exc).splitlines()[0]}); run eval where the run was started, or {fix}") from None
    hashes = {(r.get("provenance") or {}).get("policy_hash") for r in records} - {None}
    if hashes and not hashes & policy_set.known_hashes:
        raise UserError(f"{path}: `policies: recipe`: recipe {ref!r} has other policies now than when these records "
                        f"were made (policy hash {sorted(hashes)[0][:12]}, now {policy_set.hash[:12]}); {fix}")
    return policy_set


def _check_policy(records: list[dict], panel: JudgePanel, path, warnings: list[str], uses_policies: bool) -> None:
    """Faithfulness is judged against the judges file's policy set: say so
    when the records were generated under a different one."""
    policy_set = panel.policy_set
    if not uses_policies or policy_set is None:
        return
    hashes = {(r.get("provenance") or {}).get("policy_hash") for r in records} - {None}
    if hashes and not hashes <= policy_set.known_hashes:
        names = sorted({str((r.get("provenance") or {}).get("policy_set")) for r in records})
        warnings.append(f"{path}: records were generated under policy set {', '.join(names)} with a different "
                        f"text than {policy_set.name!r} ({policy_set.source}), which the faithfulness judges read; "
                        "set `policies:` in the judges file to the set the records used")


__all__ = [
    "BEHAVIOR", "BEHAVIOR_LABEL", "BEHAVIOR_NOTE", "EvalResult", "MetricComparison", "MetricSummary",
    "PairwiseSummary", "behavior_by_id", "compare", "compare_behavior",
    "evaluate", "has_labels", "scored_path", "summarize", "summarize_behavior", "summarize_pairs",
]
