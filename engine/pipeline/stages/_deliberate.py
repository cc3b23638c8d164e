"""``deliberate``: agents take turns over the query, the policies and the
thoughts so far. Each either corrects/extends the thoughts and updates the
response, or states that it agrees. Stops on agreement (k agents in a row, or
a whole round with no change) or when a budget (rounds, turns, tokens) is
spent; the reason is recorded."""

from __future__ import annotations

from aidsafe.config._specs import FieldSpec
from aidsafe.pipeline._contract import INPUT_DOCS, Contract
from aidsafe.pipeline.stages._base import Stage, StageResult, clean_thoughts, extras, stage

DEFAULT_MAX_ROUNDS = 3


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
    The stop reason is ``agreement`` only when the last ``k`` turns all said
    ``agree: true``; ``k`` turns in a row that changed nothing without all
    agreeing stop as ``no_change``.
    """

    version = 3  # v3: critique first; endorsements logged; honest stop reasons
    contract = Contract(
        inputs={k: INPUT_DOCS[k] for k in ("query", "policies", "intents", "thoughts", "response", "round")},
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
        produces=("thoughts", "response"),
    )

    options = ("agents", "stop")

    @classmethod
    def check_spec(cls, raw):
        """``agents:`` not ``agent:``; ``k`` only with the consecutive rule."""
        problems = super().check_spec(raw)
        if "agent" in raw and "agents" not in raw:
            problems.append(("agent", "deliberate takes `agents: [a, b, ...]` (turn order), not `agent:`"))
        stop = raw.get("stop", {})
        agreement = stop.get("agreement", {})
        if agreement.get("rule") == "no_change" and "k" in agreement:
            problems.append(("stop", "`k` applies to the `consecutive` rule only; remove it for `no_change`"))
        return problems

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

    def agent_modules(self):
        """The deliberators, in turn order."""
        return list(self.deliberators)

    def describe(self):
        """Budgets and agreement rule, for ``aidsafe show``."""
        return (f" rounds<={self.max_rounds}" + (f" turns<={self.max_turns}" if self.max_turns else "")
                + (f" tokens<={self.max_tokens}" if self.max_tokens else "")
                + f" agreement={self.rule}" + (f"(k={self.k})" if self.rule == "consecutive" else ""))

    def max_calls(self):
        """One call per turn."""
        bound = self.max_rounds * len(self.deliberators)
        return min(bound, self.max_turns) if self.max_turns else bound

    def forward(self, state, ctx):
        """Run turns until agreement, no change, or a budget runs out."""
        thoughts = list(state.get("thoughts", []))
        response = state.get("response", "")
        pool = list(thoughts)
        log: list[dict] = []
        extra = dict(state.get("extra", {}))
        turns = 0
        streak: list[str] = []  # actions of the current run of turns that changed nothing
        reason = None
        start_tokens = ctx.tokens_used()
        for round_no in range(1, self.max_rounds + 1):
            changed_in_round = False
            for agent in self.deliberators:
                if self.max_turns is not None and turns >= self.max_turns:
                    reason = "max_turns"
                    break
                if self.max_tokens is not None and ctx.tokens_used() - start_tokens >= self.max_tokens:
                    reason = "max_tokens"
                    break
                pred = agent(**self.context_for(state, ctx, thoughts=thoughts, response=response, round=round_no))
                turns += 1
                turn_extra = extras(pred, agent)
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
                    changed_in_round = True
                    streak = []
                else:
                    entry["action"] = "agree" if agreed else "endorse"
                    streak.append(entry["action"])
                if turn_extra:
                    entry["extra"] = turn_extra
                log.append(entry)
                if self.rule == "consecutive" and len(streak) >= self.k:
                    reason = "agreement" if all(a == "agree" for a in streak[-self.k:]) else "no_change"
                    break
            if reason:
                break
            if self.rule == "no_change" and not changed_in_round:
                reason = "no_change"
                break
        if reason is None:
            reason = "max_rounds"
        rounds_done = log[-1]["round"] if log else 0
        return StageResult({
            "thoughts": thoughts, "response": response, "all_thoughts": pool, "extra": extra,
            "deliberation": {"stop_reason": reason, "rounds": rounds_done, "turns": turns,
                             "changed": any(e["action"] == "revise" for e in log), "log": log},
        })


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "agree", "1")
    return bool(value)
