"""``deliberate``: agents take turns over the query, the policies and the
thoughts so far. Each either corrects/extends the thoughts and updates the
response, or states that it agrees. Stops on agreement (k agents in a row, a
majority or k of the n deliberators in a round, or a moderator agent's
decision), on a whole round with no change, or when a budget (rounds, turns,
tokens) is spent; the reason, and the rule that gave it, are recorded."""

from __future__ import annotations

from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import Stage, StageResult, clean_thoughts, extras, moderator_line, stage, turn_line
from aidsafe.pipeline.stages._belief import slot_agent

DEFAULT_MAX_ROUNDS = 3
# Agreement rules, each with the keys it takes besides `rule`.
RULES = {"consecutive": ("k",), "no_change": (), "majority": (), "k_of_n": ("k",), "moderator": ("agent",)}

_READS = ("query", "policies", "intents", "thoughts", "response", "round", "transcript")

MODERATOR = Contract(
    inputs={k: INPUT_DOCS[k] for k in _READS},
    default_inputs=("query", "policies", "thoughts", "response", "transcript"),
    outputs={
        "reason": FieldSpec("reason", "str", "One or two sentences, written before deciding: have the "
                                             "deliberators converged on thoughts and a response that follow "
                                             "the policies, or is something still disputed or wrong?"),
        "stop": FieldSpec("stop", "bool", "true to end the deliberation now; false for another round."),
    },
)



@stage("deliberate")
class Deliberate(Stage):
    """Agents take turns reviewing the thoughts and response until they agree
    or the budget is spent.

    Each turn answers ``critique`` first (which policies apply, is the request
    allowed, what is wrong), then ``agree``, then the revision: small models
    decide better after writing the check down. What happened is logged as it
    happened: the raw ``agree`` flag, the critique, and an ``action`` of
    ``agree`` (agreed, nothing changed), ``revise`` (changed the thoughts or
    the response) or ``endorse`` (said it disagrees but offered no change).
    The stop reason is ``agreement`` only when agents said ``agree: true``
    as the rule requires (the last ``k`` turns; a majority, or ``k`` of the
    ``n`` turns of a round); turns that changed nothing without agreeing stop
    as ``no_change``. A ``moderator`` agent reads each round (the transcript)
    and decides to stop (``moderator``, with its reason) or go on.

    An agent that lists ``transcript`` in its ``inputs`` reads the earlier
    turns of this deliberation: who said what (critique) and decided what.
    """

    version = 5  # v5: a deliberator's `decision` output overturns a screened decision, logged in the turn
    contract = Contract(
        inputs={k: INPUT_DOCS[k] for k in _READS},
        default_inputs=("query", "policies", "intents", "thoughts", "response"),
        outputs={
            "critique": FieldSpec("critique", "str",
                                  "Your check, written before deciding: which policies apply, whether the request "
                                  "is allowed, and what (if anything) in the thoughts or response is unsafe, "
                                  "over-cautious, wrong or missing."),
            "agree": FieldSpec("agree", "bool", "true if the thoughts and response already follow every policy "
                                                "and need no change; false if you corrected them."),
            "revised_thoughts": FieldSpec("revised_thoughts", "list[str]",
                                          "If you do not agree: the complete corrected and extended chain of "
                                          "thought, one thought per item. If you agree: an empty list."),
            "revised_response": FieldSpec("revised_response", "str",
                                          "If you do not agree: the corrected response to the user. "
                                          "If you agree: an empty string."),
        },
        produces=("thoughts", "response", "deliberation"),
    )

    options = ("agents", "stop")

    @classmethod
    def check_spec(cls, raw):
        """``agents:`` not ``agent:``; each agreement rule with exactly its keys
        (``k`` within 1..n for ``k_of_n``, ``agent`` for ``moderator``)."""
        problems = super().check_spec(raw)
        if "agent" in raw and "agents" not in raw:
            problems.append(("agent", "deliberate takes `agents: [a, b, ...]` (turn order), not `agent:`"))
        stop = raw.get("stop") or {}
        agreement = stop.get("agreement") if isinstance(stop, dict) else None
        if not isinstance(agreement, dict) or agreement.get("rule") not in RULES:
            return problems  # the schema reports a missing or unknown rule
        rule = agreement["rule"]
        where = ("stop", "agreement")
        for key in ("k", "agent"):
            if key in agreement and key not in RULES[rule]:
                takers = [r for r, keys in RULES.items() if key in keys]
                problems.append((where + (key,), f"`{key}` applies to the {' and '.join(takers)} rule(s) only; "
                                                 f"remove it for `{rule}` (`{key}: null` in a recipe that "
                                                 "extends one that sets it)"))
        agents = raw.get("agents") if isinstance(raw.get("agents"), list) else []
        if rule == "k_of_n":
            k = agreement.get("k")
            if k is None:
                problems.append((where, f"the k_of_n rule needs `k:` (how many of the {len(agents) or 'n'} "
                                        "deliberators must agree in a round), e.g. agreement: {rule: k_of_n, k: 2}"))
            elif agents and not 1 <= k <= len(agents):
                problems.append((where + ("k",), f"k_of_n: k must be between 1 and the number of deliberators "
                                                 f"({len(agents)}), found {k}; lower `k` or add agents"))
        if rule == "moderator" and "agent" not in agreement:
            problems.append((where, "the moderator rule needs `agent: NAME`, the agent that reads each round "
                                    "and decides to stop or go on, e.g. agreement: {rule: moderator, agent: moderator}"))
        return problems

    @classmethod
    def agent_refs(cls, raw):
        """The deliberators, plus the moderator (``stop.agreement.agent``)."""
        refs = super().agent_refs(raw)
        agreement = (raw.get("stop") or {}).get("agreement") if isinstance(raw.get("stop"), dict) else None
        if isinstance(agreement, dict) and agreement.get("rule") == "moderator" \
                and isinstance(agreement.get("agent"), str):
            refs.append((("stop", "agreement", "agent"), agreement["agent"], MODERATOR))
        return refs

    def __init__(self, spec, agents):
        super().__init__(spec, agents)
        self.deliberators = [agents[name] for name in spec.agents]
        stop = spec.stop
        self.max_rounds = stop.get("max_rounds", DEFAULT_MAX_ROUNDS)
        self.max_turns = stop.get("max_turns")
        self.max_tokens = stop.get("max_tokens")
        agreement = stop.get("agreement", {"rule": "consecutive"})
        self.rule = agreement["rule"]
        self.k = agreement.get("k", len(self.deliberators))
        self.moderator = slot_agent(agents[agreement["agent"]], MODERATOR) if self.rule == "moderator" else None

    def agent_modules(self):
        """The deliberators, in turn order, then the moderator."""
        return list(self.deliberators) + ([self.moderator] if self.moderator is not None else [])

    def describe(self):
        """Budgets and agreement rule, for ``aidsafe show``."""
        detail = {"consecutive": f"(k={self.k})", "k_of_n": f"(k={self.k})",
                  "moderator": f"({self.moderator.spec.name})" if self.moderator is not None else ""}
        return (f" rounds<={self.max_rounds}" + (f" turns<={self.max_turns}" if self.max_turns else "")
                + (f" tokens<={self.max_tokens}" if self.max_tokens else "")
                + f" agreement={self.rule}" + detail.get(self.rule, ""))

    def max_calls(self):
        """One call per turn, plus the moderator's after every round but the last."""
        bound = self.max_rounds * len(self.deliberators)
        turns = min(bound, self.max_turns) if self.max_turns else bound
        return turns + (max(self.max_rounds - 1, 0) if self.moderator is not None else 0)

    def forward(self, state, ctx):
        """Run turns until a rule stops the deliberation or a budget runs out."""
        thoughts = list(state.get("thoughts", []))
        response = state.get("response", "")
        pool = list(thoughts)
        log: list[dict] = []
        moderation: list[dict] = []
        transcript: list[str] = []
        extra = dict(state.get("extra", {}))
        turns = 0
        streak: list[str] = []  # actions of the current run of turns that changed nothing
        reason = detail = None
        start_tokens = ctx.tokens_used()

        def over_budget() -> str | None:
            if self.max_turns is not None and turns >= self.max_turns:
                return "max_turns"
            if self.max_tokens is not None and ctx.tokens_used() - start_tokens >= self.max_tokens:
                return "max_tokens"
            return None

        for round_no in range(1, self.max_rounds + 1):
            round_entries: list[dict] = []
            for agent in self.deliberators:
                reason = over_budget()
                if reason:
                    break
                pred = agent(**self.context_for(state, ctx, thoughts=thoughts, response=response, round=round_no,
                                                transcript=list(transcript)))
                turns += 1
                turn_extra = extras(pred, agent)
                overturn = _decision_change(extra, turn_extra, str(getattr(pred, "critique", "") or "").strip())
                extra.update(turn_extra)
                agreed = _truthy(pred.agree)
                new_thoughts = clean_thoughts(pred.revised_thoughts) or thoughts
                new_response = str(pred.revised_response or "").strip() or response
                changed = new_thoughts != thoughts or new_response != response
                entry = {"round": round_no, "turn": turns, "agent": agent.spec.name, "agree": agreed,
                         "critique": str(getattr(pred, "critique", "") or "").strip()}
                if agreed and changed:
                    # "agree" means "no change needed" (the contract says so): a
                    # revision sent with it is not applied, but the log says so.
                    entry["ignored_revision"] = True
                    changed = False
                if changed:
                    entry.update(action="revise", changed=True, thoughts=new_thoughts, response=new_response)
                    pool += [t for t in new_thoughts if t not in pool]
                    thoughts, response = new_thoughts, new_response
                    streak = []
                else:
                    entry["action"] = "agree" if agreed else "endorse"
                    streak.append(entry["action"])
                if overturn:
                    entry.update(overturn)
                if turn_extra:
                    entry["extra"] = turn_extra  # every turn's own extras, not only the last turn's
                log.append(entry)
                round_entries.append(entry)
                transcript.append(turn_line(entry))
                if self.rule == "consecutive" and len(streak) >= self.k:
                    if all(a == "agree" for a in streak[-self.k:]):
                        reason, detail = "agreement", f"the last {self.k} turns agreed"
                    else:
                        reason, detail = "no_change", f"{self.k} turns in a row changed nothing without all agreeing"
                    break
            if reason:
                break
            reason, detail = self._end_of_round(round_no, round_entries)
            if reason is None and self.moderator is not None and round_no < self.max_rounds:
                reason = over_budget()
                if reason:
                    break
                pred = self.moderator(**self.context_for(state, ctx, thoughts=thoughts, response=response,
                                                         round=round_no, transcript=list(transcript)))
                decision = {"round": round_no, "agent": self.moderator.spec.name, "stop": _truthy(pred.stop),
                            "reason": str(pred.reason or "").strip()}
                moderator_extra = extras(pred, self.moderator)
                if moderator_extra:
                    decision["extra"] = moderator_extra
                    extra.update(moderator_extra)
                moderation.append(decision)
                transcript.append(moderator_line(decision))
                if decision["stop"]:
                    reason, detail = "moderator", f"{decision['agent']}: {decision['reason']}"
            if reason:
                break
        if reason is None:
            reason = "max_rounds"
        if detail is None:
            detail = {"max_rounds": f"{self.max_rounds} round(s) done", "max_turns": f"{self.max_turns} turn(s) done",
                      "max_tokens": f"token budget {self.max_tokens} spent"}[reason]
        rounds_done = log[-1]["round"] if log else 0
        deliberation = {"stop_reason": reason, "stop_rule": self.rule if reason in ("agreement", "no_change",
                                                                                    "moderator") else "budget",
                        "stop_detail": detail, "rounds": rounds_done, "turns": turns,
                        "changed": any(e["action"] == "revise" for e in log), "log": log}
        if self.moderator is not None:
            deliberation["moderation"] = moderation
        return StageResult({"thoughts": thoughts, "response": response, "all_thoughts": pool, "extra": extra,
                            "deliberation": deliberation})

    def _end_of_round(self, round_no: int, entries: list[dict]) -> tuple[str | None, str | None]:
        """The round-level rules: (stop reason, detail), or (None, None) to go on."""
        changed = any(e["action"] == "revise" for e in entries)
        agreed = sum(e["action"] == "agree" for e in entries)
        n = len(entries)
        if self.rule == "majority" and 2 * agreed > n:
            return "agreement", f"{agreed} of {n} deliberators agreed in round {round_no} (a majority)"
        if self.rule == "k_of_n" and agreed >= self.k:
            return "agreement", f"{agreed} of {n} deliberators agreed in round {round_no} (k={self.k})"
        if self.rule in ("no_change", "majority", "k_of_n") and not changed:
            return "no_change", f"round {round_no} changed neither the thoughts nor the response"
        return None, None


def _decision_change(extra: dict, turn_extra: dict, critique: str) -> dict:
    """A deliberator that declares a ``decision`` output may overturn the
    record's decision (a ``decide`` stage's), only with a stated reason (its
    critique) and never a human label's. Applies the change to ``turn_extra``
    (keeping the old decision where it may not change) and returns what the
    turn logs: ``decision_change`` {from, to, reason}, or ``decision_kept``."""
    if "decision" not in turn_extra or "decision" not in extra:
        return {}
    old, new = extra["decision"], str(turn_extra["decision"] or "").strip().lower()
    if new == old or new not in ("answer", "decline"):
        turn_extra["decision"] = old
        return {}
    if extra.get("decision_source") == "label" or not critique:
        turn_extra["decision"] = old
        why = "the input's label decides" if extra.get("decision_source") == "label" else "no reason was given"
        return {"decision_kept": {"proposed": new, "why": why}}
    turn_extra["decision"] = new
    turn_extra["decision_source"] = "deliberation"
    return {"decision_change": {"from": old, "to": new, "reason": critique}}


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "agree", "1")
    return bool(value)
