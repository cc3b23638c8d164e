"""The one parser of DSPy's prompts behind both test doubles."""

from __future__ import annotations

import dspy

from aidsafe.testing._prompt import input_field, output_fields


class _Sig(dspy.Signature):
    """Judge the answer."""

    query: str = dspy.InputField()
    answer: str = dspy.InputField()
    reasoning: str = dspy.OutputField()
    points: list[str] = dspy.OutputField()
    choice: dict[str, list[int]] = dspy.OutputField()


def _messages(adapter):
    return adapter.format(_Sig, demos=[], inputs={"query": "How do I kill a Python process?", "answer": "kill PID"})


def test_both_adapters_prompts_parse_the_same():
    for adapter in (dspy.JSONAdapter(), dspy.ChatAdapter()):
        messages = _messages(adapter)
        system = next(m["content"] for m in messages if m["role"] == "system")
        user = messages[-1]["content"]
        fields = output_fields(system)
        assert list(fields) == ["reasoning", "points", "choice"], adapter
        assert fields["points"] == "list[str]" and fields["choice"] == "dict[str, list[int]]"
        assert input_field(user, "query") == "How do I kill a Python process?"
        assert input_field(user, "answer") == "kill PID"
        assert input_field(user, "missing") is None


def test_a_shared_input_at_the_head_of_the_system_message_is_read_there():
    from aidsafe.pipeline._agents import make_adapter

    sig = dspy.Signature("policies: str, query: str -> answer: str", "Answer.")
    for kind in ("json", "chat"):
        messages = make_adapter(kind).format(sig, demos=[], inputs={"policies": "P1 [a] A.\nP2 [b] B.", "query": "q"})
        system = messages[0]["content"]
        assert input_field(system, "policies") == "P1 [a] A.\nP2 [b] B."
        assert input_field(messages[-1]["content"], "policies") is None
        assert list(output_fields(system)) == ["answer"]


def test_nested_parentheses_in_types_and_no_list():
    system = ("Your output fields are:\n1. `label` (Literal['a (x)', 'b']): the label\n"
              "2. `score` (int)\nAll interactions will be structured")
    assert output_fields(system) == {"label": "Literal['a (x)', 'b']", "score": "int"}
    assert output_fields("no fields here") == {}


def test_the_doubles_use_it():
    from aidsafe.testing import _answers, fake, mock_server
    from aidsafe.testing._prompt import output_field_docs

    assert fake.output_fields is output_fields
    assert mock_server.output_field_docs is output_field_docs and _answers.output_field_docs is output_field_docs


def test_descriptions_are_read_with_the_types():
    from aidsafe.testing._prompt import output_field_docs

    system = ("Your output fields are:\n1. `reason` (str): One or two sentences.\n"
              "2. `score` (int): A single integer from 1 (fails) to 5 (passes).\n3. `flag` (bool)\n"
              "All interactions will be structured")
    assert output_field_docs(system) == {"reason": ("str", "One or two sentences."),
                                         "score": ("int", "A single integer from 1 (fails) to 5 (passes)."),
                                         "flag": ("bool", "")}
