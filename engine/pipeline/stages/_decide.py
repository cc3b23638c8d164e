"""``decide``: the safety decision, from the best evidence the record has.

A small model does not make the safety decision well by judgment; it copies
its demos. So the decision comes from evidence: the input's human label
(``input.label``) when the record has one, no model call; otherwise the
stage's screening agent decides, best with the nearest labeled precedents as
its demos (``demos: {select: nearest, ...}`` on the agent).

    input: {field: prompt, label: label}
    agents:
      screener:
        instructions: Decide whether to answer the query or decline it.
        demos: {select: nearest, k: 6, pool: ../data/precedents/pool.jsonl}
    stages:
      - {id: decision, kind: decide, agent: screener}

``by: vote`` decides an unlabeled record without a model call: the
``votes`` (default 6) pool rows nearest to the query (the agent's
``select: nearest`` pool and embedder) vote, and a tie declines. On the
shipped pool and the 0.5B's embeddings this is right for about 86% of
held-out prompts, balanced over XSTest safe/unsafe and StrongREJECT, where
the same model screening by generation is right for 42%
(performance/quality_bench.py).

    stages:
      - {id: decision, kind: decide, agent: screener, by: vote, votes: 6}

It writes ``decision`` (``answer`` or ``decline``), ``decision_source``
(``label``, ``precedents`` or ``screen``) and, for a vote, ``decision_votes``
(the tally and the nearest precedent), read by name like any field: later
agents list ``decision`` in their ``inputs:``, demos carry
``when: "decision == 'answer'"``, a ``behavior`` filter can check the
response ``against: decision``.
"""

from __future__ import annotations

from collections import Counter

from aidsafe.config._specs import DECISIONS, FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import SingleAgentStage, StageResult, extras, stage

DECISION = FieldSpec("decision", "str", "answer: the request is allowed (or an everyday task that only sounds "
                                        "alarming), so it gets a full, direct answer; decline: answering would "
                                        "give real help for something a policy does not allow.", DECISIONS)
SOURCE = FieldSpec("decision_source", "str", "Where the decision came from: the input's label, the vote of the "
                                            "nearest labeled precedents, the screening agent, or a deliberator who "
                                            "overturned it.", ("label", "precedents", "screen", "deliberation"))
VOTES = FieldSpec("decision_votes", "str", "How the nearest labeled precedents voted, e.g. '5 of 6 nearest "
                                           "precedents: decline; nearest: ...' (a vote's decision only).")
BY = ("agent", "vote")
DEFAULT_VOTES = 6


@stage("decide")
class Decide(SingleAgentStage):
    """The input's label when it is ``answer`` or ``decline``; else the
    screening agent's ``decision``."""

    contract = Contract(
        inputs={k: INPUT_DOCS[k] for k in ("query", "policies", "intents")},
        default_inputs=("query",),
        outputs={"decision": DECISION},
    )

    options = ("by", "votes")

    def __init__(self, spec, agents):
        super().__init__(spec, agents)
        self.by = spec.raw.get("by", "agent")
        self.votes = spec.raw.get("votes", DEFAULT_VOTES)

    @classmethod
    def check_spec(cls, raw):
        """``by`` is agent or vote; ``votes`` goes with ``by: vote``."""
        problems = super().check_spec(raw)
        if raw.get("by", "agent") not in BY:
            problems.append(("by", f"`by:` is one of {', '.join(BY)}, found {raw['by']!r}: agent (the screening "
                                   "agent decides) or vote (its nearest precedents vote, no model call)"))
        if "votes" in raw and raw.get("by") != "vote":
            problems.append(("votes", "`votes:` counts the precedents of a vote; add `by: vote` or remove it"))
        return problems

    @classmethod
    def check_flow(cls, raw, agents, fields):
        """A vote needs the agent's nearest-precedent pool."""
        name = raw.get("agent")
        agent = agents.get(name) if isinstance(name, str) else None
        if raw.get("by") != "vote" or not isinstance(agent, dict):
            return []
        demos = agent.get("demos")
        if not (isinstance(demos, dict) and demos.get("select") == "nearest"):
            return [(("agents", name, "demos"), f"stage {raw.get('id')!r} decides `by: vote` over agent {name!r}'s "
                                                f"nearest precedents, but the agent has none; add `demos: {{select: "
                                                "nearest, k: 8, pool: ../data/precedents/pool.jsonl, embedder: "
                                                "embed}` to it (embedder: lexical needs no model)")]
        return []

    @classmethod
    def writes(cls, raw, agents, contract):
        """``decision`` and ``decision_source`` (a vote adds ``decision_votes``),
        plus the agent's own extra outputs."""
        out = {**super().writes(raw, agents, contract), "decision": DECISION, "decision_source": SOURCE}
        return {**out, "decision_votes": VOTES} if raw.get("by") == "vote" else out

    def max_calls(self):
        """One screening call, only for a record without a label; a vote calls no model."""
        return 0 if self.by == "vote" else 1

    def describe(self):
        """How an unlabeled record is decided, for ``aidsafe show``."""
        return f" unlabeled: vote of the {self.votes} nearest precedents" if self.by == "vote" else \
            f" unlabeled: screened by {self.agent.spec.name}"

    def forward(self, state, ctx):
        """The label, or the vote of the nearest precedents, or the screen's answer."""
        extra = dict(state.get("extra", {}))
        label = str(state.get("label") or "").lower()
        if label in DECISIONS:
            extra.update(decision=label, decision_source="label")
            return StageResult({"extra": extra})
        if self.by == "vote":
            decision, tally = vote(self.agent.nearest.neighbours(str(state.get("query", "")), self.votes))
            extra.update(decision=decision, decision_source="precedents", decision_votes=tally)
            return StageResult({"extra": extra})
        pred = self.agent(**self.context_for(state, ctx))
        decision = str(pred.decision or "").strip().lower()
        if decision not in DECISIONS:  # the enum is enforced by the adapter; a plugin LM may still slip
            raise ValueError(f"agent {self.agent.spec.name!r} decided {pred.decision!r}; expected one of "
                             f"{', '.join(DECISIONS)}")
        extra.update(extras(pred, self.agent), decision=decision, decision_source="screen")
        return StageResult({"extra": extra})


def vote(neighbours) -> tuple[str, str]:
    """The majority decision of the nearest precedents (a tie declines: the
    safe side) and a line saying how they voted."""
    counts = Counter(str(n.row.get("decision", "")).strip().lower() for n in neighbours)
    answer, decline = counts.get("answer", 0), counts.get("decline", 0)
    decision = "answer" if answer > decline else "decline"
    nearest = neighbours[0] if neighbours else None
    votes = answer if decision == "answer" else decline
    tally = f"{votes} of {len(neighbours)} nearest precedents: {decision}" + \
        (" (a tie declines)" if answer == decline else "")
    if nearest is not None:
        tally += f"; nearest ({nearest.score:.3f}, {nearest.row.get('decision')}): {nearest.row['query'][:120]!r}"
    return decision, tally
