"""Stage kinds and filters are registered by name; a recipe's ``kind:`` and
``type:`` look them up here.

Nothing here imports DSPy: a stage is a plain object that wires the agents
(``dspy.Module`` objects) it is given, and the compiled ``Program`` owns those
agents, so DSPy's optimizers still find every predictor. That keeps loading
and checking recipes (``aidsafe validate``) free of DSPy's import cost.

Third parties add kinds and filters without editing the package, through the
entry-point groups ``aidsafe.stages`` and ``aidsafe.filters`` (see README,
"Extending aidsafe").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from aidsafe._util.registry import Registry
from aidsafe.config._specs import FieldSpec, StageSpec
from aidsafe.pipeline._conditions import Condition
from aidsafe.pipeline._contract import INPUT_DOCS, RECORD_FIELDS, Contract, answer_name

if TYPE_CHECKING:  # pragma: no cover
    from aidsafe.pipeline._agents import Agent

def _named(attribute: str) -> Callable[[str, type], type]:
    def prepare(name: str, cls: type) -> type:
        setattr(cls, attribute, name)
        return cls

    return prepare


STAGES: Registry[type["Stage"]] = Registry("stage kind", entry_points="aidsafe.stages", prepare=_named("kind"))
FILTERS: Registry[type["Filter"]] = Registry("filter", entry_points="aidsafe.filters", prepare=_named("type"))


def stage(name: str) -> Callable:
    """Register a :class:`Stage` subclass as the stage kind ``name``."""
    return STAGES.register(name)


def filter_kind(name: str) -> Callable:
    """Register a :class:`Filter` subclass as the filter type ``name``."""
    return FILTERS.register(name)


@dataclass
class StageContext:
    """What a running stage needs besides the record: the policy text and a
    token meter (for token budgets)."""

    policies: str
    tokens_used: Callable[[], int] = lambda: 0
    # policy ids and names, for stages that check a thought names a policy
    policy_terms: tuple[str, ...] = ()
    # what the recipe's agents were shown as example answers (their demos'
    # output values), for filters that catch answers copied from them
    demo_texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Branch:
    """A named group of stages behind one condition (``branch:`` in a recipe)."""

    name: str
    when: Condition


@dataclass
class StageResult:
    """A stage's changes to the record state, plus anything it wants logged."""

    updates: dict = field(default_factory=dict)
    filtered: str | None = None  # a reason: the record is dropped with status `filtered`


class Stage:
    """Base of all stage kinds: ``__init__`` takes its agents (built by the
    compiler from the kind's ``contract``), ``forward`` only wires them.

    Everything particular to a kind lives in its module: its contract, its
    checks of the stage mapping (:meth:`check_spec`), its line in
    ``aidsafe show`` (:meth:`describe`) and its bound on LM calls
    (:meth:`max_calls`).
    """

    kind = "?"
    contract = Contract(inputs={}, default_inputs=(), outputs={})
    version = 1  # bump when a kind's behaviour changes, to invalidate its cache
    # stage keys only this kind takes beyond id/kind/agent/filters (checked by the loader)
    options: tuple[str, ...] = ()

    def __init__(self, spec: StageSpec, agents: dict[str, Agent]):
        self.spec = spec
        # `when:` (run only if) and `where:` (keep the record only if), checked by the loader
        self.when = Condition.parse(spec.raw["when"]) if spec.raw.get("when") is not None else None
        self.where = Condition.parse(spec.raw["where"]) if spec.raw.get("where") is not None else None
        # the branch the stage belongs to (config/_branches.py): decided once per record, at its first stage
        branch = spec.raw.get("branch")
        self.branch = Branch(branch["name"], Condition.parse(branch["when"])) if isinstance(branch, dict) else None
        self.filters_before = [FILTERS.get(f["type"])(f) for f in spec.filters["before"]]
        self.filters_after = [FILTERS.get(f["type"])(f) for f in spec.filters["after"]]

    @classmethod
    def check_spec(cls, raw: dict) -> list[tuple[str, str]]:
        """Kind-specific checks of the stage mapping: (key, message) pairs."""
        problems = []
        if cls.contract.outputs and "agent" not in raw and "agents" not in raw and not cls.agent_refs(raw):
            problems.append(("kind", f"stage kind {cls.kind} needs an `agent:`"))
        if not cls.contract.outputs and ("agent" in raw or "agents" in raw):
            problems.append(("agent", f"stage kind {cls.kind} runs no agent; remove `agent:`"))
        if "agents" in raw and "agents" not in cls.options:
            problems.append(("agents", f"only deliberate stages take `agents:`; use `agent: NAME` for {cls.kind}"))
        if "stop" in raw and "stop" not in cls.options:
            problems.append(("stop", "only deliberate stages take `stop:`"))
        return problems

    @classmethod
    def agent_refs(cls, raw: dict) -> list[tuple[tuple, str, Contract]]:
        """Where the stage mapping names agents: ``(path in the stage, agent
        name, the contract that agent serves)``; the loader checks each name
        and the agent's inputs against that contract. Default: ``agent:``,
        ``agents: [...]`` and the role slots in ``slots`` (``judge: NAME``)."""
        refs = [(("agent",), raw["agent"], cls.contract)] if isinstance(raw.get("agent"), str) else []
        refs += [(("agents", i), name, cls.contract) for i, name in enumerate(raw.get("agents") or [])
                 if isinstance(name, str)]
        refs += [((slot,), raw[slot], contract) for slot, contract in getattr(cls, "slots", {}).items()
                 if isinstance(raw.get(slot), str)]
        return refs

    @classmethod
    def contract_for(cls, raw: dict, agents: dict, fields: dict[str, FieldSpec]) -> Contract:
        """The contract of this stage mapping, given the recipe's ``agents:``
        mappings and the record ``fields`` earlier stages write (name ->
        FieldSpec). Default: the kind's ``contract``; ``predict`` builds one
        from its agent's declared ``inputs:`` and ``outputs:``. The loader
        checks the stage's agents against it and the compiler builds them
        with it. Every record field written before the stage (the input's
        columns and label, a ``decide`` stage's ``decision``, declared agent
        outputs) is offered to every kind's agents too, read by name."""
        given = {name: FieldSpec(name, spec.type or "str", spec.desc, spec.enum, spec.source)
                 for name, spec in fields.items() if name not in cls.contract.inputs and name not in RECORD_FIELDS}
        if "deliberation" in fields and "transcript" not in cls.contract.inputs:
            given["transcript"] = INPUT_DOCS["transcript"]  # the finished deliberation's turns (transcript_of)
        if not given:
            return cls.contract
        return replace(cls.contract, inputs={**cls.contract.inputs, **given})

    @classmethod
    def check_flow(cls, raw: dict, agents: dict, fields: dict[str, FieldSpec]) -> list[tuple[tuple, str]]:
        """Checks that need the record fields earlier stages write:
        ``(path from the recipe's top, message)`` pairs."""
        return []

    @classmethod
    def writes(cls, raw: dict, agents: dict, contract: Contract) -> dict[str, FieldSpec]:
        """Record fields this stage writes: its contract's ``produces`` and
        the extra outputs its ``agent:``/``agents:`` declare (kept in
        ``record.extra``, read by their bare name)."""
        out = {name: RECORD_FIELDS.get(name) or contract.outputs.get(name) or FieldSpec(name, "str")
               for name in contract.produces}
        for path, name, _ in cls.agent_refs(raw):
            agent = agents.get(name) if path[0] in ("agent", "agents") else None
            outputs = agent.get("outputs") if isinstance(agent, dict) else None
            for out_name, value in (outputs if isinstance(outputs, dict) else {}).items():
                if out_name not in contract.outputs and isinstance(value, (str, dict)):
                    field_spec = FieldSpec.from_yaml(out_name, value)
                    out[out_name] = FieldSpec(out_name, field_spec.type or "str", field_spec.desc, field_spec.enum)
        return out

    def agent_modules(self) -> list[Agent]:
        """The agents this stage calls (the compiler registers them with the program)."""
        return []

    def describe(self) -> str:
        """Extra detail for this stage's line in ``aidsafe show`` (budgets, rules)."""
        return ""

    def __call__(self, state: dict, ctx: StageContext) -> StageResult:
        return self.forward(state, ctx)

    def max_calls(self) -> int:
        """Upper bound of LM calls per record (without parse retries); used by
        ``aidsafe run --plan``. One call per agent unless a kind says more."""
        return len(self.agent_modules())

    def forward(self, state: dict, ctx: StageContext) -> StageResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def context_for(self, state: dict, ctx: StageContext, **extra: Any) -> dict:
        """The values an agent may read, from the record state."""
        # the record's own fields first (declared outputs in `extra`, input columns, the label), then the
        # kinds' named inputs
        values = dict(state.get("extra") or {})
        values.update((name, value) for name, value in state.items() if name != "extra")
        values.update({"query": state.get("query", ""), "policies": ctx.policies,
                       "intents": state.get("intents", []), "thoughts": state.get("thoughts", []),
                       "response": state.get("response", ""), "transcript": transcript_of(state.get("deliberation"))})
        values.update(extra)
        return values

    def apply_filters(self, filters: list["Filter"], thoughts: list[str], state: dict,
                      removed: list[dict], ctx: StageContext) -> tuple[list[str], str | None]:
        """Run deterministic filters; collect what each removed and why."""
        for flt in filters:
            thoughts, dropped, reason = flt.apply(thoughts, state, ctx)
            removed += [{"thought": t, "filter": flt.type} for t in dropped]
            if reason:
                return thoughts, reason
        return thoughts, None


@dataclass(frozen=True)
class StageFlow:
    """What one stage sees and leaves: the record fields ``reads`` before it
    runs (name -> FieldSpec), its resolved ``contract``, the fields it ``writes``."""

    reads: dict
    contract: Contract
    writes: dict


def dataflow(stages: list[dict], agents: dict, given: dict | None = None) -> list[StageFlow]:
    """The record fields before and after each stage of a (validated)
    recipe's ``stages:``, in order; ``agents`` are the ``agents:`` mappings,
    ``given`` the fields the input gives (``InputSpec.record_fields()``)."""
    fields = {"query": RECORD_FIELDS["query"], **(given or {})}
    flows = []
    for raw in stages:
        kind = STAGES.get(raw["kind"])
        contract = kind.contract_for(raw, agents, dict(fields))
        writes = kind.writes(raw, agents, contract)
        flows.append(StageFlow(dict(fields), contract, writes))
        fields.update(writes)
    return flows


class SingleAgentStage(Stage):
    """A stage kind run by one agent (``agent: NAME``): ``self.agent``."""

    def __init__(self, spec: StageSpec, agents: dict[str, Agent]):
        super().__init__(spec, agents)
        self.agent = agents[spec.agent]

    def agent_modules(self) -> list[Agent]:
        """The one agent."""
        return [self.agent]


class Filter:
    """A deterministic filter over a list of thoughts (and the record)."""

    type = "?"

    def __init__(self, spec: dict):
        self.spec = spec

    @classmethod
    def check(cls, spec: dict) -> list[tuple[str, str]]:
        """Problems with this filter's mapping: (key, message) pairs."""
        return []

    def apply(self, thoughts: list[str], state: dict, ctx: StageContext) -> tuple[list[str], list[str], str | None]:
        """Return (kept, removed, record-level reason or None); ``ctx`` has the policy text."""
        raise NotImplementedError  # pragma: no cover - abstract


def extras(prediction: Any, agent: Agent) -> dict:
    """Output fields an agent declares beyond its stage's contract, by their
    declared names (one it also reads is answered as ``revised_<name>``)."""
    return {name: prediction[answer_name(name, agent.input_names)] for name in agent.spec.outputs
            if name not in agent.contract.outputs}


_ACTION_WORDS = {"agree": "agreed, no change needed", "revise": "revised the thoughts or response",
                 "endorse": "disagreed but proposed no change"}


def turn_line(entry: dict) -> str:
    """A deliberation turn (a log entry) as a transcript line."""
    return (f"Round {entry['round']}, {entry['agent']}: {_ACTION_WORDS.get(entry.get('action'), entry.get('action'))}."
            + (f" Critique: {entry['critique']}" if entry.get("critique") else ""))


def moderator_line(decision: dict) -> str:
    """A moderator's decision as a transcript line."""
    return (f"Round {decision['round']}, moderator {decision['agent']}: "
            f"{'stop' if decision['stop'] else 'continue'}. Reason: {decision['reason']}")


def transcript_of(deliberation: Any) -> list[str]:
    """The transcript of a finished deliberation (the record's
    ``deliberation``), as its agents read it turn by turn: each round's
    turns, then the moderator's decision on that round."""
    if not isinstance(deliberation, dict):
        return []
    log = [e for e in deliberation.get("log") or [] if isinstance(e, dict)]
    moderation = [d for d in deliberation.get("moderation") or [] if isinstance(d, dict)]
    lines = []
    for round_no in sorted({e.get("round", 0) for e in log} | {d.get("round", 0) for d in moderation}):
        lines += [turn_line(e) for e in log if e.get("round", 0) == round_no]
        lines += [moderator_line(d) for d in moderation if d.get("round", 0) == round_no]
    return lines


def clean_thoughts(value: Any) -> list[str]:
    """Models sometimes return a string or nested items where a list of
    thoughts is expected; keep non-empty text items."""
    if isinstance(value, str):
        value = [line.strip(" -*\t") for line in value.splitlines()]
    if not isinstance(value, list):
        return []
    return [str(t).strip() for t in value if str(t).strip()]
