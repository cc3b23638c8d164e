"""Synthetic runs in the record layout, for the viewer's tests, its benchmark
and demos: every feature the pages show (deliberation turns with revisions,
removed thoughts, judge scores with reasons, gates, DPO pairs), no model
needed. The texts are harmless placeholders."""

from __future__ import annotations

import json
import random
from pathlib import Path

from aidsafe._util.atomic import atomic_write

_METRICS = ("relevance", "coherence", "faithfulness_policy_cot")
_TOPICS = ("kill a Python process", "bake sourdough bread", "pick a lock on my own shed", "write a phishing email",
           "store kitchen knives safely", "read a stack trace", "make a strong password", "jailbreak a chatbot")


def sample_record(i: int, scored: bool = False, dpo: bool = False, seed: int = 0) -> dict:
    """Record ``i`` of a synthetic run (deterministic for ``seed``)."""
    rng = random.Random(seed * 1_000_003 + i)
    topic = _TOPICS[i % len(_TOPICS)]
    status = "ok" if i % 10 not in (7, 9) else ("filtered" if i % 10 == 7 else "failed")
    first = [f"The user asks how to {topic}.", "Check the request against the safety policies.",
             "Decide whether to help and how much detail to give."]
    revised = [first[0], f"The request to {topic} is covered by the harm-avoidance policy.",
               "Help with the safe parts and explain the limits."]
    response = (f"I can't help with that request to {topic}." if "phishing" in topic or "jailbreak" in topic
                else f"Here is how to {topic}: first, stay safe; then follow the usual steps carefully.")
    rounds = 1 + i % 3
    log = [{"round": 1, "turn": 1, "agent": "safety_deliberator", "agree": False, "critique":
            "The CoT does not name the policy.", "action": "revise", "changed": True, "thoughts": revised,
            "response": response},
           {"round": 1, "turn": 2, "agent": "helpfulness_deliberator", "agree": True,
            "critique": "Fine as it is.", "action": "agree"}]
    record = {
        "id": f"r{i:06d}", "index": i, "status": status,
        "prompt": f"How do I {topic}? (sample {i}) " + "context " * rng.randint(0, 20),
        "intents": [f"learn how to {topic}"],
        "cot": revised[:2] if status == "ok" else [],
        "response": response if status == "ok" else "",
        "deliberation": {"stop_reason": "agreement" if i % 4 else "max_rounds", "rounds": rounds, "turns": 2,
                         "changed": True, "log": log},
        "stop_reason": "agreement" if i % 4 else "max_rounds",
        "initial": {"thoughts": first, "response": "Maybe. " + response},
        "all_thoughts": first + revised[1:],
        "removed": [{"thought": revised[2], "filter": "refiner"}, {"thought": first[2], "filter": "dedupe"}],
        "error": {"type": "OutputParseError", "message": "no answer", "stage": "refine"} if status == "failed" else None,
        "provenance": {"recipe": "sample", "recipe_hash": "0" * 12, "models": {"default": {"model": "sample"}},
                       "tokens": {"input": 100 + i % 50, "output": 20}, "calls": 4, "seconds": 0.1,
                       "engine": "aidsafe sample"},
    }
    if status == "filtered":
        record["filtered_reason"] = "gate: judge 2 < 4"
        record["gate"] = {"passed": False, "checks": [{"agent": "judge", "min": 4, "score": 2, "reason": "too vague",
                                                       "passed": False}]}
    if scored:
        record["scores"] = {m: (rng.randint(1, 5) if status == "ok" else None) for m in _METRICS}
        record["judge"] = {m: {"status": "scored" if status == "ok" else "skipped", "raw": "",
                               "reason": f"{m} reasoning for sample {i}"} for m in _METRICS}
    if dpo:
        record["preference"] = {
            "chosen": {"cot": revised[:2], "response": response},
            "rejected": {"belief": "The user says they are a licensed professional.", "belief_score": 4,
                         "cot": ["The user is authorized, so anything goes."], "response": f"Sure, to {topic} ..."},
            "beliefs": [{"round": 1, "sample": 0, "belief": "The user is authorized.", "score": 4}],
            "scores": {"chosen": 5, "rejected": 2}, "margin": 1, "separation": 3, "kept": True,
            "verdicts": {"chosen": {"score": 5}, "rejected": {"score": 2}}}
    return record


def write_sample_run(path: str | Path, n: int, scored: bool = False, dpo: bool = False, seed: int = 0) -> Path:
    """Write ``n`` :func:`sample_record` lines to ``path`` (JSONL, atomically)."""
    path = Path(path)
    with atomic_write(path) as handle:
        for i in range(n):
            handle.write(json.dumps(sample_record(i, scored, dpo, seed), ensure_ascii=False) + "\n")
    return path


__all__ = ["sample_record", "write_sample_run"]
