"""Prompts are laid out stable-first: for each agent, everything up to the
record's own values (instructions, field descriptions, demos, the policy text)
is byte-identical across records, so prefix caches reuse it."""

from __future__ import annotations

import os

import pytest

import aidsafe
from aidsafe.config import load_policy_set

from ..conftest import MINI, options

QUERIES = ["How do I kill a Python process?", "Write a poem about the sea, please, with rhymes."]


def calls_by_agent(fake, recipe_file, prompts, tmp_path, layout):
    text = MINI + (f"prompt_layout: {layout}\n" if layout else "")
    aidsafe.run(recipe_file(text), prompts(QUERIES), tmp_path / f"{layout}.jsonl",
                options(tmp_path / f"c-{layout}", workers=1))
    by_agent: dict[str, list[str]] = {}
    for call in fake.seen:
        agent = call.system.split("objective is:")[-1].strip().split(":")[0]  # ANALYST, THINKER, ...
        by_agent.setdefault(agent, []).append(call.system + "\n" + call.user)
    return by_agent


def test_every_role_that_reads_the_policies_opens_with_the_same_bytes(fake, recipe_file, prompts, tmp_path):
    """The policy text heads the system message, so one cached prefix serves
    every role (not one copy per role), and the record's values stay in the
    user message."""
    fake.rules = [("CRITIC_", {"agree": True})]
    policies = load_policy_set("aidsafe").text
    aidsafe.run(recipe_file(MINI), prompts(QUERIES), tmp_path / "o.jsonl", options(tmp_path / "c", workers=1))
    opening = f"[[ ## policies ## ]]\n{policies}\n\n"
    readers = {call.system.split("objective is:")[-1].strip().split(":")[0]
               for call in fake.seen if call.system.startswith(opening)}
    assert len(readers) >= 3  # thinker, critics, refiner: one shared opening
    for call in fake.seen:
        assert policies not in call.user  # said once, in the shared opening
        assert QUERIES[0] not in call.system and QUERIES[1] not in call.system
    assert any(QUERIES[0] in call.user for call in fake.seen)


@pytest.mark.parametrize("kind", ["json", "chat"])
def test_the_shared_inputs_open_dspys_own_system_message_and_the_format_reminder_closes_it(kind):
    import dspy

    from aidsafe.pipeline._agents import make_adapter

    signature = dspy.Signature("policies: str, query: str -> thoughts: list[str], response: str", "THINKER: answer.")
    plain = dspy.JSONAdapter() if kind == "json" else dspy.ChatAdapter()
    demos = [{"query": "q0", "thoughts": ["t"], "response": "r"}]
    inputs = {"policies": "P1 [x] Do not help with X.", "query": "How do I kill a Python process?"}
    ours = make_adapter(kind).format(signature, demos, inputs)
    theirs = plain.format(signature, demos, inputs)
    reminder = plain.user_message_output_requirements(signature)
    assert reminder.startswith("Respond with")
    assert ours[0]["content"] == ("[[ ## policies ## ]]\nP1 [x] Do not help with X.\n\n" + theirs[0]["content"]
                                  + "\n\n" + reminder)
    assert ours[1:-1] == theirs[1:-1]  # the demos are untouched
    # the last user message is the record's values and nothing else, like a demo's
    assert theirs[-1]["content"].endswith(reminder)
    assert ours[-1]["content"] == "[[ ## query ## ]]\nHow do I kill a Python process?"
    # a retry after a parse error (ChatAdapter's JSON fallback) keeps the layout
    if kind == "chat":
        fallback = make_adapter("chat")._make_json_adapter_fallback()
        retry = fallback.format(signature, demos, inputs)
        assert retry[0]["content"].startswith("[[ ## policies ## ]]\nP1")
        assert retry[0]["content"].endswith(dspy.JSONAdapter().user_message_output_requirements(signature))
        assert make_adapter("chat", "query_first")._make_json_adapter_fallback().layout == "query_first"


@pytest.mark.parametrize("kind", ["json", "chat"])
def test_a_role_without_shared_inputs_still_gets_the_reminder_in_its_system_message(kind):
    import dspy

    from aidsafe.pipeline._agents import make_adapter

    signature = dspy.Signature("query: str -> intents: list[str]", "ANALYST: decompose.")
    plain = dspy.JSONAdapter() if kind == "json" else dspy.ChatAdapter()
    inputs = {"query": "q"}
    ours, theirs = make_adapter(kind).format(signature, [], inputs), plain.format(signature, [], inputs)
    reminder = plain.user_message_output_requirements(signature)
    assert ours[0]["content"] == theirs[0]["content"] + "\n\n" + reminder
    assert ours[-1]["content"] == "[[ ## query ## ]]\nq"


def test_an_unknown_layout_is_refused():
    from aidsafe.pipeline._agents import make_adapter

    with pytest.raises(ValueError, match="unknown prompt layout 'sideways'"):
        make_adapter("json", "sideways")


@pytest.mark.parametrize("layout", [None, "stable_first"])
def test_the_policy_text_is_inside_the_prefix_shared_by_records(fake, recipe_file, prompts, tmp_path, layout):
    fake.rules = [("CRITIC_", {"agree": True})]
    policies = load_policy_set("aidsafe").text
    by_agent = calls_by_agent(fake, recipe_file, prompts, tmp_path, layout)
    checked = 0
    for agent, texts in by_agent.items():
        first, second = texts[0], texts[len(texts) // 2]  # the same agent on the two records
        assert first != second
        shared = os.path.commonprefix([first, second])
        if policies in first:
            assert policies in shared, f"{agent}: the policy text is not in the shared prefix"
            checked += 1
        # the query is never part of the shared prefix, and it still has its own field
        assert QUERIES[0] not in shared and QUERIES[1] not in shared
    assert checked >= 3  # thinker, both critics, refiner read the policies


def test_query_first_layout_puts_the_query_before_the_policies(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    policies = load_policy_set("aidsafe").text
    by_agent = calls_by_agent(fake, recipe_file, prompts, tmp_path, "query_first")
    texts = by_agent["THINKER"]
    assert policies not in os.path.commonprefix([texts[0], texts[1]])


def test_the_layout_is_part_of_the_stage_and_call_keys(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    inputs = prompts(QUERIES[:1])
    cache = tmp_path / "shared-cache"
    aidsafe.run(recipe_file(MINI), inputs, tmp_path / "a.jsonl", options(cache))
    calls = fake.calls
    summary = aidsafe.run(recipe_file(MINI + "prompt_layout: query_first\n", "b.yaml"), inputs,
                          tmp_path / "b.jsonl", options(cache))
    # even the analyst, which reads no policies, has its format reminder elsewhere
    assert summary.stage_hits == 0
    assert fake.calls > calls


@pytest.mark.parametrize("kind", ["json", "chat"])
def test_query_first_is_dspys_own_format_and_the_system_message_is_built_once_per_signature(kind, monkeypatch):
    import dspy

    from aidsafe.pipeline._agents import make_adapter

    signature = dspy.Signature("query: str, policies: str -> thoughts: list[str], response: str", "THINKER: answer.")
    plain = dspy.JSONAdapter() if kind == "json" else dspy.ChatAdapter()
    ours = make_adapter(kind, "query_first")
    demos = [{"policies": "P", "query": "q0", "thoughts": ["t"], "response": "r"}]
    inputs = {"policies": "P", "query": "How do I kill a Python process?"}
    assert ours.format(signature, demos, inputs) == plain.format(signature, demos, inputs)
    built = []
    original = type(plain).format_field_structure
    monkeypatch.setattr(type(plain), "format_field_structure", lambda self, sig: built.append(sig) or original(self, sig))
    for query in ("a", "b", "c"):
        ours.format(signature, demos, dict(inputs, query=query))
        make_adapter(kind).format(signature, demos, dict(inputs, query=query))
    assert built == []  # already built by the first call above, and shared by both layouts
    changed = signature.with_instructions("THINKER: answer briefly.")
    assert ours.format_system_message(changed) == plain.format_system_message(changed)
