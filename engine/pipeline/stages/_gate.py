"""``gate``: a quality gate. Judge agents score the record (1-5, reason
first); a record below any check's threshold, or whose judge gave no usable
score, becomes ``filtered`` with every score and reason kept in ``gate``.

    - id: gate
      kind: gate
      checks:
        - {agent: policy_judge, min: 4}        # response follows the policies
        - {agent: refusal_judge, min: 4}       # no refusal of an allowed request
        - {agent: consistency_judge, min: 4}   # the response follows from the CoT

Judges are ordinary agents (``instructions``, ``model``), so the gate can use
a stronger model than the generators: give the judges ``model: judge``.

A score counts only with a reason: a judge whose ``reason`` is empty, a bare
number, the adapter's format note, or mostly a copy of the response it was
shown (small models often do this) did not judge, and its check is
``unscored`` (the record is filtered, the reason says why).
"""

from __future__ import annotations

import re

from aidsafe._util.errors import OutputParseError
from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import Stage, StageResult, stage
from aidsafe.pipeline.stages._filters import _words, word_runs

SCORE_MIN, SCORE_MAX = 1, 5
# a reason whose word 5-grams are mostly the response's is a copy, not a verdict
ECHO_GRAM, ECHO_SHARE, MIN_REASON_WORDS = 5, 0.6, 3


def parse_score(value) -> int | None:
    """An integer 1-5 from a judge's ``score``, or None (never guessed)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if SCORE_MIN <= value <= SCORE_MAX else None
    text = str(value or "").strip()
    match = re.fullmatch(r"([1-5])(?:\s*/\s*5)?(?:\.0)?", text)
    return int(match.group(1)) if match else None


def reason_problem(reason: str, response: str) -> str | None:
    """Why a judge's ``reason`` is not a reason (None when it is one): empty,
    a bare number, the output-format note copied back, or mostly the response."""
    words = _words(reason)
    if "value you produce must be" in reason or "note:" in reason.lower():
        return "the reason repeats the output-format instructions"
    if len([w for w in words if not w.isdigit()]) < MIN_REASON_WORDS:
        return "the judge gave no reason"
    grams = set(word_runs(response, ECHO_GRAM))
    mine = word_runs(reason, ECHO_GRAM)
    if mine and sum(g in grams for g in mine) / len(mine) >= ECHO_SHARE:
        return "the reason copies the response instead of judging it"
    return None


@stage("gate")
class Gate(Stage):
    """Judge agents score each record; below a threshold it is filtered."""

    contract = Contract(
        inputs={**{k: INPUT_DOCS[k] for k in ("query", "policies", "intents", "response")},
                "thoughts": FieldSpec("thoughts", "list[str]", "The final chain of thought, one thought per item.")},
        default_inputs=("query", "policies", "thoughts", "response"),
        outputs={
            "reason": FieldSpec("reason", "str", "One or two sentences: what you checked and what you found."),
            "score": FieldSpec("score", "int", f"A single integer from {SCORE_MIN} (fails) to {SCORE_MAX} (passes)."),
        },
        requires=("response",),
        produces=("gate",),
    )
    options = ("checks",)
    version = 3  # v2: gate.scores (judge -> score); v3: a score needs a reason (reason_problem)

    @classmethod
    def check_spec(cls, raw):
        """``checks:`` is a non-empty list of ``{agent, min}``."""
        checks = raw.get("checks")
        if not isinstance(checks, list) or not checks:
            return [("kind", "a gate needs `checks: [{agent: NAME, min: 4}, ...]`")]
        problems = super().check_spec(raw)
        if "agent" in raw:
            problems.append(("agent", "a gate names its judges in `checks:`, not `agent:`"))
        for i, check in enumerate(checks):
            if not isinstance(check, dict) or not isinstance(check.get("agent"), str):
                problems.append(("checks", f"checks[{i}]: expected {{agent: NAME, min: 1-5}}, found {check!r}"))
            elif not isinstance(check.get("min", 4), int) or not SCORE_MIN <= check.get("min", 4) <= SCORE_MAX:
                problems.append(("checks", f"checks[{i}].min: expected an integer {SCORE_MIN}-{SCORE_MAX}, "
                                           f"found {check.get('min')!r}"))
        return problems

    @classmethod
    def agent_refs(cls, raw):
        """Each check names one judge agent."""
        return [(("checks", i, "agent"), c["agent"], cls.contract) for i, c in enumerate(raw.get("checks") or [])
                if isinstance(c, dict) and isinstance(c.get("agent"), str)]

    def __init__(self, spec, agents):
        super().__init__(spec, agents)
        self.checks = [(agents[c["agent"]], int(c.get("min", 4))) for c in spec.raw["checks"]]

    def agent_modules(self):
        """The judges, in check order (one agent may serve two checks)."""
        seen, out = set(), []
        for agent, _ in self.checks:
            if id(agent) not in seen:
                seen.add(id(agent))
                out.append(agent)
        return out

    def max_calls(self):
        """One call per check."""
        return len(self.checks)

    def describe(self):
        """The thresholds, for ``aidsafe show``."""
        return " " + ", ".join(f"{agent.spec.name}>={minimum}" for agent, minimum in self.checks)

    def forward(self, state, ctx):
        """Run every check (even after a failure: the scores are data too)."""
        results, failures = [], []
        context = self.context_for(state, ctx)
        for agent, minimum in self.checks:
            entry = {"agent": agent.spec.name, "min": minimum}
            try:
                pred = agent(**context)
                score, reason = parse_score(pred.score), str(pred.reason or "").strip()
                problem = reason_problem(reason, str(state.get("response") or ""))
                if score is None:
                    reason = f"unscored: score {pred.score!r} is not an integer {SCORE_MIN}-{SCORE_MAX}; {reason}"
                elif problem:
                    entry["raw_score"] = score
                    score, reason = None, f"unscored: {problem}; {reason}"[:600]
            except OutputParseError as exc:  # kept, never guessed: the raw answer stays with the verdict
                score, reason = None, f"unscored: {exc}"[:600]
                entry["raw"] = str(getattr(exc, "raw", "") or "")[:2000]
            entry.update(score=score, reason=reason, passed=score is not None and score >= minimum)
            if score is None:
                failures.append(f"{agent.spec.name} unscored")
            elif score < minimum:
                failures.append(f"{agent.spec.name} {score} < {minimum}")
            results.append(entry)
        # scores by judge, for `when:`/`where:` conditions (gate.scores.policy_judge)
        gate = {"passed": not failures, "scores": {r["agent"]: r["score"] for r in results}, "checks": results}
        return StageResult({"gate": gate}, filtered=("gate: " + "; ".join(failures)) if failures else None)
