"""LLM-as-judge roles declared in YAML (``recipes/judges.yaml``).

A judges file goes through the same load path as a recipe: YAML with lines
-> ``schemas/judges.schema.json`` (every problem at once, with its line) ->
cross-checks -> typed :class:`JudgeSpec` (:mod:`._judge_specs`, which needs
no DSPy, so ``aidsafe validate`` stays fast). Each judge becomes a DSPy signature
(through :class:`engine.agents.Agent`, so it gets the same parse retries and
the same defence against field-marker injection): the judged text is passed
as the judge's own input fields, never spliced into its instructions.

Verdicts are parsed strictly here, not by DSPy: every output field is a
string, and only an exact verdict counts. An answer that cannot be parsed,
or a score outside its scale, is a :class:`Verdict` with status ``unscored``
that keeps the raw text; nothing is ever rounded, clipped or guessed.

Judge kinds:

* ``pointwise`` - one integer on ``scale`` (the paper's 1-5 metrics);
* ``pairwise`` - ``A``, ``B`` or ``tie`` for two records, asked in both
  orders (see :func:`combine_orders`);
* ``label`` - one of ``labels`` (refusal classification in benchmarks);
* ``rubric`` - one integer per item (the StrongREJECT-style rubric).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import dspy

from aidsafe._util.errors import OutputParseError, UserError
from aidsafe._util.redact import redact
from aidsafe.config._policies import PolicySet, resolve_policies
from aidsafe.config._specs import AgentSpec, FieldSpec
from aidsafe.evaluation._judge_specs import (  # noqa: F401 - the judges API, re-exported
    DEFAULT_SCALE,
    INPUT_DOCS,
    INPUTS,
    KINDS,
    SIDE_DOCS,
    JudgeSet,
    JudgeSpec,
    is_judges_file,
    load_judges,
    resolve_judges_path,
)
from aidsafe.evaluation._tasks import run_tasks
from aidsafe.models._engine import ModelHandle, build_models
from aidsafe.pipeline._agents import Agent, Contract, make_adapter
from aidsafe.store._cache import Cache

# ---------------------------------------------------------------- parsing

_INT_RE = re.compile(r"[+-]?\d+(?:\.0+)?")


def parse_score(text: Any, low: int, high: int) -> int | None:
    """An integer within ``[low, high]``, or ``None``.

    Strict on purpose: ``"4"``, ``" 4 "`` and ``"4.0"`` are 4; ``"4/5"``,
    ``"4.5"``, ``"four"``, ``"Score: 4"`` and ``"7"`` (on 1-5) are not
    scores. A judge that cannot give a bare number is unscored, not read."""
    if isinstance(text, bool) or text is None:
        return None
    value = str(text).strip()
    if not _INT_RE.fullmatch(value):
        return None
    number = int(float(value))
    return number if low <= number <= high else None


def _norm_label(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().strip(".").lower())


def parse_label(text: Any, labels: Iterable[str]) -> str | None:
    """One of ``labels``, ignoring case, surrounding spaces, a final full stop
    and space/hyphen vs underscore (``"Full refusal"`` is ``full_refusal``).
    Anything else (two labels, a sentence) is ``None``."""
    if not isinstance(text, str):
        return None
    wanted = _norm_label(text)
    for label in labels:
        if wanted == _norm_label(label):
            return label
    return None


def parse_choice(text: Any) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` (case-insensitive, optional full stop or
    the words ``answer``/``response`` before the letter), else ``None``."""
    if not isinstance(text, str):
        return None
    value = text.strip().strip(".").strip()
    value = re.sub(r"^(answer|response)\s+", "", value, flags=re.I)
    if value.upper() in ("A", "B"):
        return value.upper()
    if value.lower() in ("tie", "equal", "draw"):
        return "tie"
    return None


# ---------------------------------------------------------------- verdicts

@dataclass
class Verdict:
    """One judge's answer about one record.

    ``status``: ``scored`` (``value`` holds the parsed verdict), ``unscored``
    (the answer could not be parsed or was out of range: ``raw`` keeps it),
    ``skipped`` (the record cannot be judged: failed, filtered or missing an
    input) or ``error`` (the model call itself failed)."""

    status: str
    value: Any = None
    raw: str | None = None
    reason: str = ""
    note: str = ""

    @property
    def scored(self) -> bool:
        return self.status == "scored"

    def to_dict(self) -> dict:
        out = {"status": self.status, "raw": self.raw, "reason": self.reason}
        if self.note:
            out["note"] = self.note
        if self.status == "scored" and not isinstance(self.value, int):
            out["value"] = self.value
        return out


def _outputs(spec: JudgeSpec) -> dict[str, FieldSpec]:
    fields = {"reason": FieldSpec("reason", "str", "One or two sentences explaining the verdict.")}
    if spec.kind == "pointwise":
        low, high = spec.scale
        fields["score"] = FieldSpec("score", "str", f"A single integer from {low} to {high}, nothing else.")
    elif spec.kind == "pairwise":
        fields["verdict"] = FieldSpec("verdict", "str", "Exactly one of: A, B, tie.")
    elif spec.kind == "label":
        fields["label"] = FieldSpec("label", "str", f"Exactly one of: {', '.join(spec.labels)}.")
    else:
        for item, (low, high) in spec.items.items():
            fields[item] = FieldSpec(item, "str", f"A single integer from {low} to {high}, nothing else.")
    return fields


def _inputs(spec: JudgeSpec) -> dict[str, FieldSpec]:
    """Input fields; a pairwise judge gets the shared ones (query, policies)
    first, then answer A's fields, then answer B's."""
    sided = spec.kind == "pairwise"
    fields = {n: FieldSpec(n, "str", INPUT_DOCS[n]) for n in spec.inputs if not (sided and n in SIDE_DOCS)}
    if sided:
        for side in ("a", "b"):
            for name in (n for n in spec.inputs if n in SIDE_DOCS):
                key = f"{name}_{side}"
                fields[key] = FieldSpec(key, "str", SIDE_DOCS[name].format(side=side.upper()))
    return fields


class Judge(dspy.Module):
    """A judge role: a DSPy signature on its own model, with strict verdict
    parsing. Call it with its input fields (strings); it returns a
    :class:`Verdict` and never raises for a bad answer."""

    def __init__(self, spec: JudgeSpec, lm: dspy.LM, max_parse_retries: int = 1):
        super().__init__()
        self.spec = spec
        inputs = _inputs(spec)
        contract = Contract(inputs=inputs, default_inputs=tuple(inputs), outputs=_outputs(spec))
        agent_spec = AgentSpec(name=f"judge_{spec.name}", instructions=spec.instructions, model=spec.model,
                               inputs=tuple(inputs), outputs={}, temperature=spec.temperature,
                               max_tokens=spec.max_tokens)
        self.agent = Agent(agent_spec, contract, lm, max_parse_retries)

    @property
    def input_names(self) -> list[str]:
        return self.agent.input_names

    def forward(self, **inputs: str) -> Verdict:
        missing = [n for n in self.input_names if inputs.get(n) is None]
        if missing:
            return Verdict("skipped", note=f"record has no {', '.join(missing)}")
        try:
            with dspy.context(adapter=make_adapter("json")):
                prediction = self.agent(**inputs)
        except OutputParseError as exc:
            return Verdict("unscored", raw=exc.raw, note=f"answer not in the required format: {str(exc)[:300]}")
        except (KeyboardInterrupt, SystemExit):
            raise
        except UserError:
            raise  # configuration problems (a missing key) stop the whole run
        except Exception as exc:  # one failed call must not stop the run
            return Verdict("error", note=f"{type(exc).__name__}: {redact(str(exc))[:300]}")
        return self.parse(prediction)

    def parse(self, prediction: Any) -> Verdict:
        """Strictly parse a prediction's fields into a verdict."""
        spec = self.spec
        reason = _text(prediction.get("reason"))
        if spec.kind == "pointwise":
            raw = _text(prediction.get("score"))
            value = parse_score(raw, *spec.scale)
            low, high = spec.scale
            note = "" if value is not None else f"score {raw!r} is not an integer from {low} to {high}"
        elif spec.kind == "pairwise":
            raw = _text(prediction.get("verdict"))
            value = parse_choice(raw)
            note = "" if value is not None else f"verdict {raw!r} is not A, B or tie"
        elif spec.kind == "label":
            raw = _text(prediction.get("label"))
            value = parse_label(raw, spec.labels)
            note = "" if value is not None else f"label {raw!r} is not one of {', '.join(spec.labels)}"
        else:
            values = {item: _text(prediction.get(item)) for item in spec.items}
            raw = json.dumps(values, ensure_ascii=False)
            parsed = {item: parse_score(values[item], *rng) for item, rng in spec.items.items()}
            bad = [f"{item}={values[item]!r} (expected {lo}-{hi})" for item, (lo, hi) in spec.items.items()
                   if parsed[item] is None]
            value = None if bad else parsed
            note = "; ".join(bad)
        if value is None:
            return Verdict("unscored", raw=raw, reason=reason, note=note)
        return Verdict("scored", value=value, raw=raw, reason=reason)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------- records

def render_cot(cot: Any) -> str | None:
    """A record's thoughts as numbered lines (``None`` when it has none)."""
    if cot is None:
        return None
    if isinstance(cot, str):
        return cot.strip() or "(no thoughts)"
    if isinstance(cot, list):
        kept = [str(t).strip() for t in cot if str(t).strip()]
        lines = [f"{i}. {t}" for i, t in enumerate(kept, 1)]
        return "\n".join(lines) or "(no thoughts)"
    return json.dumps(cot, ensure_ascii=False)


def record_fields(record: dict, policies: str | None) -> dict[str, str | None]:
    """The judge inputs a record offers: query (its ``prompt``, or
    ``query``), cot, response, policies."""
    query = record.get("prompt") if record.get("prompt") is not None else record.get("query")
    response = record.get("response")
    return {"query": query if isinstance(query, str) else None,
            "cot": render_cot(record.get("cot")),
            "response": response if isinstance(response, str) else None,
            "policies": policies}


def skip_reason(record: dict) -> str | None:
    """Why a record is not judged (failed or filtered), or ``None``."""
    status = record.get("status", "ok")
    if status != "ok":
        return f"record status is {status}"
    return None


@dataclass
class PairVerdict:
    """A pairwise judge's outcome for record X (first file) vs record Y
    (second file), from two calls with the order swapped.

    ``outcome``: ``first`` / ``second`` (both orders name the same winner),
    ``tie`` (both say tie), ``inconsistent`` (the orders disagree: position
    bias or a coin flip, counted as a tie in win rates) or ``unscored`` (a
    call gave no usable verdict, or a record was skipped)."""

    outcome: str
    calls: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"outcome": self.outcome, "calls": self.calls}


def combine_orders(first_as_a: Verdict, first_as_b: Verdict) -> str:
    """The outcome from the call where the first record was shown as A and the
    call where it was shown as B. A winner counts only when both orders agree."""
    if not (first_as_a.scored and first_as_b.scored):
        return "unscored"
    one = {"A": "first", "B": "second", "tie": "tie"}[first_as_a.value]
    two = {"A": "second", "B": "first", "tie": "tie"}[first_as_b.value]
    return one if one == two else "inconsistent"


class JudgePanel:
    """Built judges of one judges file, on cached models."""

    def __init__(self, judge_set: JudgeSet, models: dict[str, ModelHandle], policy_set: PolicySet | None = None):
        self.judge_set = judge_set
        self.models = models
        self.policy_set = policy_set  # what judges that read `policies` see
        self.policies_text = policy_set.text if policy_set is not None else None
        self.judges = {name: Judge(spec, models[spec.model].lm, judge_set.max_parse_retries)
                       for name, spec in judge_set.judges.items()}

    @classmethod
    def build(cls, judge_set: JudgeSet, cache: Cache, judge_model: str | None = None,
              overrides: dict[str, str] | None = None, api_base: str | None = None,
              api_key_env: str | None = None, policy_set: PolicySet | None = None) -> "JudgePanel":
        """Build every judge model (``judge_model`` replaces all of them,
        ``overrides`` single ones; ``api_base`` sets the endpoint of replaced
        ones, ``api_key_env`` the variable their key is read from).
        ``policy_set``: the policies judges read (default: the file's
        ``policies:``; needed for ``policies: recipe``)."""
        specs = dict(judge_set.models)
        if judge_model or api_base or api_key_env:
            for name, spec in specs.items():
                # A replaced model does not inherit the file's endpoint.
                specs[name] = dataclasses.replace(spec, model=judge_model or spec.model,
                                                  api_base=api_base if judge_model else (api_base or spec.api_base),
                                                  api_key_env=api_key_env or spec.api_key_env)
        models = build_models(specs, cache, overrides)
        needs_policies = any("policies" in j.inputs for j in judge_set.judges.values())
        if needs_policies and policy_set is None:
            if judge_set.policies == "recipe":
                raise UserError(f"{judge_set.path.name}: `policies: recipe` means the policies the judged records "
                                "were made with, and there are no records here; name a set in the judges file "
                                "(e.g. `policies: aidsafe`)")
            policy_set = resolve_policies(judge_set.policies, judge_set.path.parent, str(judge_set.path))
        return cls(judge_set, models, policy_set if needs_policies else None)

    def identity(self) -> dict:
        """What judged: the judges file's hash and each model's identity."""
        return {"judges": self.judge_set.name, "judges_hash": self.judge_set.hash,
                "policy_hash": self.policy_set.hash if self.policy_set is not None else None,
                "models": {n: h.identity for n, h in sorted(self.models.items())}}

    def judge(self, name: str) -> Judge:
        self.judge_set.get(name)
        return self.judges[name]

    def score(self, name: str, record: dict) -> Verdict:
        """Run a pointwise, label or rubric judge on one record."""
        reason = skip_reason(record)
        if reason:
            return Verdict("skipped", note=reason)
        judge = self.judge(name)
        fields = record_fields(record, self.policies_text)
        return judge(**{k: fields[k] for k in judge.spec.inputs})

    def compare(self, name: str, first: dict, second: dict) -> PairVerdict:
        """Run a pairwise judge on two records, once in each order."""
        judge = self.judge(name)
        reasons = [r for r in (skip_reason(first), skip_reason(second)) if r]
        if reasons:
            return PairVerdict("unscored", [{"order": "skipped", "status": "skipped", "note": "; ".join(reasons)}])
        f1, f2 = record_fields(first, self.policies_text), record_fields(second, self.policies_text)
        if f1["query"] != f2["query"]:
            # Same id, different prompt: there is nothing fair to compare.
            return PairVerdict("unscored", [{"order": "skipped", "status": "skipped",
                                             "note": "the two records have different prompts"}])
        verdicts = []
        for a, b in ((f1, f2), (f2, f1)):
            inputs = {}
            for key in judge.spec.inputs:
                if key in SIDE_DOCS:
                    inputs[f"{key}_a"], inputs[f"{key}_b"] = a[key], b[key]
                else:
                    inputs[key] = a[key] if a[key] is not None else b[key]
            verdicts.append(judge(**inputs))
        calls = [{"order": order, "verdict": v.value, **v.to_dict()}
                 for order, v in zip(("first=A", "first=B"), verdicts)]
        return PairVerdict(combine_orders(*verdicts), calls)


# ------------------------------------------------------------- batch scoring

def score_records(panel: JudgePanel, records: list[dict], names: list[str], workers: int = 1,
                  progress: Callable[[], None] | None = None) -> list[dict]:
    """Copies of ``records`` with ``scores: {name: int|null}`` and
    ``judge: {name: {status, raw, reason[, note]}}`` for each pointwise judge
    in ``names``; earlier scores of other metrics are kept."""
    for name in names:
        if panel.judge_set.get(name).kind != "pointwise":
            raise UserError(f"judge {name!r} is {panel.judge_set.judges[name].kind}; scores come from "
                            "pointwise judges")
    tasks = [(i, n) for i in range(len(records)) for n in names]
    verdicts = run_tasks([lambda i=i, n=n: panel.score(n, records[i]) for i, n in tasks], workers, progress)
    out = [dict(r) for r in records]
    for record in out:
        record["scores"] = dict(record.get("scores") or {})
        record["judge"] = dict(record.get("judge") or {})
    for (i, name), verdict in zip(tasks, verdicts):
        out[i]["scores"][name] = verdict.value if verdict.scored else None
        out[i]["judge"][name] = verdict.to_dict()
    for record in out:
        record["judged_by"] = panel.identity()
    return out


__all__ = [
    "Judge", "JudgePanel", "JudgeSet", "JudgeSpec", "PairVerdict", "Verdict", "combine_orders", "load_judges",
    "parse_choice", "parse_label", "parse_score", "record_fields", "render_cot", "score_records",
]
