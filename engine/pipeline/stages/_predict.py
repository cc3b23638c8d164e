"""``predict``: a generic step. Its agent reads any record fields (built-in,
or written by earlier stages) and writes the named, typed fields it declares
under ``outputs:``; later stages, ``when:``/``where:`` conditions and
``predict`` agents read them by name.

    agents:
      risk_classifier:
        instructions: Classify how risky answering the user's query would be.
        inputs: [query, intents]          # any field an earlier stage writes (default: query)
        outputs:
          risk: {type: str, enum: [low, medium, high], desc: "How risky answering is."}
          severity: {type: int, desc: "1 (harmless) to 5 (severe)."}
    stages:
      - {id: risk, kind: predict, agent: risk_classifier}

Custom outputs land in ``record.extra`` (``record.extra.risk``); an output
named ``intents``, ``thoughts`` or ``response`` replaces that record field
(a critique-then-revise step rewrites the response this way).
"""

from __future__ import annotations

from typing import Any

from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._conditions import record_lookup
from aidsafe.pipeline._contract import (
    EMPTY_VALUES,
    INPUT_DOCS,
    RECORD_FIELDS,
    RESERVED_FIELDS,
    WRITABLE_FIELDS,
    Contract,
    answer_name,
)
from aidsafe.pipeline.stages._base import SingleAgentStage, StageResult, clean_thoughts, stage, transcript_of


def _typed(spec: FieldSpec) -> FieldSpec:
    return FieldSpec(spec.name, spec.type or "str", spec.desc, spec.enum)


@stage("predict")
class Predict(SingleAgentStage):
    """One agent reads named record fields and writes named, typed fields."""

    # The kind-level contract is a placeholder; each stage's comes from
    # `contract_for` (its agent's declarations and the fields before it).
    contract = Contract(inputs={"policies": INPUT_DOCS["policies"], **RECORD_FIELDS}, default_inputs=("query",),
                        outputs={})

    def __init__(self, spec, agents):
        super().__init__(spec, agents)
        self.contract = self.agent.contract  # this stage's own (what `aidsafe show` lists as written)

    @classmethod
    def check_spec(cls, raw):
        """One ``agent:``; no ``agents:``, ``stop:`` or ``filters:``."""
        problems = []
        if not isinstance(raw.get("agent"), str):
            problems.append(("kind", "a predict stage needs `agent: NAME` (the agent's `outputs:` are the fields "
                                     "it writes)"))
        if "agents" in raw:
            problems.append(("agents", "a predict stage runs one agent; use `agent: NAME`"))
        if "stop" in raw:
            problems.append(("stop", "only deliberate stages take `stop:`"))
        if "filters" in raw:
            problems.append(("filters", "a predict stage takes no `filters:`; add a `filter` stage after it, "
                                        "or a `where:` condition"))
        return problems

    @classmethod
    def contract_for(cls, raw, agents, fields):
        """Inputs: the policies and every field written so far; outputs: the
        agent's declared ``outputs:`` (a built-in field keeps its type)."""
        agent = agents.get(raw.get("agent")) if isinstance(raw.get("agent"), str) else None
        declared = agent.get("outputs") if isinstance(agent, dict) else None
        outputs = {}
        for name, value in (declared if isinstance(declared, dict) else {}).items():
            if isinstance(value, (str, dict)):
                own = FieldSpec.from_yaml(name, value)
                base = RECORD_FIELDS.get(name) if name in WRITABLE_FIELDS else None
                outputs[name] = FieldSpec(name, base.type, own.desc or base.desc) if base else _typed(own)
        inputs = {"policies": INPUT_DOCS["policies"], **{name: _typed(spec) for name, spec in fields.items()}}
        if "deliberation" in fields:
            inputs["transcript"] = INPUT_DOCS["transcript"]  # the finished deliberation's turns, oldest first
        return Contract(inputs=inputs, default_inputs=("query",), outputs=outputs, produces=tuple(outputs))

    @classmethod
    def check_flow(cls, raw, agents, fields):
        """The agent declares at least one output; none is a reserved name;
        a built-in field keeps its type."""
        name = raw.get("agent")
        agent = agents.get(name) if isinstance(name, str) else None
        if not isinstance(agent, dict):
            return []  # an unknown agent is reported where the stage names it
        outputs = agent.get("outputs")
        if not isinstance(outputs, dict) or not outputs:
            return [(("agents", name), f"agent {name!r} runs a predict stage, which writes the agent's declared "
                                       "`outputs:`; it declares none; add e.g. `outputs: {risk: {type: str, "
                                       "enum: [low, medium, high]}}`")]
        problems = []
        for out_name, value in outputs.items():
            where = ("agents", name, "outputs", out_name)
            if out_name in WRITABLE_FIELDS:
                expected = RECORD_FIELDS[out_name].type
                if isinstance(value, dict) and value.get("type") not in (None, expected):
                    problems.append((where + ("type",), f"`{out_name}` is a record field of type {expected}, "
                                                        f"found {value['type']}; drop `type:` or use {expected}"))
            elif out_name in RESERVED_FIELDS:
                problems.append((where, f"a predict stage cannot write {out_name!r}: the record keeps it for the "
                                        f"run; it may write {', '.join(WRITABLE_FIELDS)} or new names; rename "
                                        "this output"))
        return problems

    def context_for(self, state, ctx, **extra: Any) -> dict:
        """Every field the agent reads, from the record (a field a skipped
        stage did not write reads as empty)."""
        lookup = record_lookup(state)
        values: dict[str, Any] = {}
        for name in self.agent.input_names:
            if name == "policies":
                values[name] = ctx.policies
                continue
            if name == "transcript":
                values[name] = transcript_of(state.get("deliberation"))
                continue
            value = lookup((name,))
            if value is None:
                value = EMPTY_VALUES.get(self.agent.contract.inputs[name].type)
            values[name] = value
        values.update(extra)
        return values

    def forward(self, state, ctx):
        """Ask the agent; write built-in outputs to the record, others to ``extra``."""
        pred = self.agent(**self.context_for(state, ctx))
        updates: dict[str, Any] = {}
        extra = dict(state.get("extra", {}))
        for name, spec in self.agent.contract.outputs.items():
            value = pred[answer_name(name, self.agent.input_names)]
            if spec.type == "list[str]":
                value = clean_thoughts(value)
            elif isinstance(value, str):
                value = value.strip()
            if name in WRITABLE_FIELDS:
                updates[name] = value
            else:
                extra[name] = value
        updates["extra"] = extra
        return StageResult(updates)
