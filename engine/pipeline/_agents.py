"""Agent roles as DSPy modules.

Each agent in a recipe becomes a ``dspy.Signature`` built from the YAML (its
instructions are the docstring, its fields come from the stage kind's contract
plus the agent's own declarations) wrapped in a ``dspy.Predict``, so DSPy's
optimizers can tune it like any hand-written program.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import weakref
from typing import Any
from typing import Literal as LiteralType

import dspy
from dspy.adapters.utils import format_field_value
from dspy.utils.exceptions import AdapterParseError

from aidsafe._util.errors import OutputParseError
from aidsafe.config._specs import AgentSpec, FieldSpec
from aidsafe.models._engine import parse_attempt, watch_truncation
from aidsafe.pipeline._contract import (
    EMPTY_VALUES,
    STABLE_INPUTS,
    Contract,
    answer_name,
    check_layout,
    order_inputs,
)

PY_TYPES = {"str": str, "list[str]": list[str], "bool": bool, "int": int, "float": float, "dict": dict}

# Input values are untrusted (jailbreak prompts). DSPy's adapters separate
# fields with "[[ ## name ## ]]" headers; a prompt that contains such a header
# could impersonate another field, so the marker is broken up in input values.
_MARKER = "[[ ##"
_MARKER_SAFE = "[[ #\u200b#"


# The record state a stage is running on (set by the program around each
# stage): an agent picks the demos whose `when:` holds for it.
CURRENT_RECORD: contextvars.ContextVar[dict | None] = contextvars.ContextVar("aidsafe_record", default=None)


@functools.lru_cache(maxsize=256)
def parse_when(text: str):
    """A demo's ``when:`` condition, parsed once."""
    from aidsafe.pipeline._conditions import Condition

    return Condition.parse(text)


def neutralize(value: Any) -> Any:
    """Break field markers inside untrusted input values."""
    if isinstance(value, str):
        return value.replace(_MARKER, _MARKER_SAFE)
    if isinstance(value, list):
        return [neutralize(v) for v in value]
    return value


class _SameSystemMessage:
    """An adapter mixin: the system message (field descriptions, answer
    structure, instructions) depends on the signature alone, so it is built
    once per signature instead of on every call (about half a millisecond of
    CPU per call for DSPy to rebuild the fields' JSON schemas). An optimizer's
    new instructions or demos make a new signature, hence a new entry; the
    bytes sent are exactly DSPy's."""

    _system_messages: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _system_lock = threading.Lock()

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        with self._system_lock:
            known = self._system_messages.get(signature, {}).get(type(self))
        if known is None:
            known = super().format_system_message(signature)
            with self._system_lock:
                self._system_messages.setdefault(signature, {})[type(self)] = known
        return known


def shared_inputs(signature: type[dspy.Signature]) -> list[str]:
    """The inputs a prompt opens with: the leading run of the signature's
    inputs whose value is the same for every record (the policy text). The
    stable-first layout orders them first; the query-first layout starts with
    the query, so it has none."""
    lead = []
    for name in signature.input_fields:
        if name not in STABLE_INPUTS:
            break
        lead.append(name)
    return lead


class _SharedPrefix:
    """An adapter mixin for the ``stable_first`` prompt layout: everything
    that is the same for every record comes before the record's values.

    * The inputs that are the same for every record and every role (the
      policy text) open the system message, ahead of the role's own field
      descriptions, instructions and demos, instead of sitting in the last
      user message behind them. Every role's prompt then starts with the same
      bytes, so a prefix cache (llama.cpp's prompt cache, vLLM's automatic
      prefix caching, hosted prompt caching) reads the policy text once for
      all roles, not once per role. They keep their ``[[ ## name ## ]]``
      header and their place in the field descriptions.
    * DSPy's answer-format reminder ("Respond with a JSON object in the
      following order of fields: ...") closes the system message instead of
      the last user message: it is the same for every record, so it belongs
      to the cached prefix, not to the part read anew on every call.

    The last user message then carries the record's own values and nothing
    else, like the demos' user messages. With ``layout = "query_first"`` (the
    layout before prefix caching, kept to compare against) the messages are
    exactly DSPy's."""

    layout = "stable_first"

    def format(self, signature: type[dspy.Signature], demos: list[dict[str, Any]],
               inputs: dict[str, Any]) -> list[dict[str, Any]]:
        if self.layout != "stable_first":
            return super().format(signature, demos, inputs)
        lead = [name for name in shared_inputs(signature) if name in inputs]
        messages = super().format(signature, demos, {k: v for k, v in inputs.items() if k not in lead})
        parts = [f"[[ ## {name} ## ]]\n{format_field_value(signature.input_fields[name], inputs[name])}"
                 for name in lead]
        parts.append(messages[0]["content"])
        reminder = super().user_message_output_requirements(signature)
        if reminder:
            parts.append(reminder)
        messages[0] = {**messages[0], "content": "\n\n".join(parts)}
        return messages

    def user_message_output_requirements(self, signature: type[dspy.Signature]) -> str | None:
        # stable_first: the reminder is in the system message (see format)
        return None if self.layout == "stable_first" else super().user_message_output_requirements(signature)


class JSONAdapter(_SharedPrefix, _SameSystemMessage, dspy.JSONAdapter):
    """DSPy's JSONAdapter with the system message built once per signature
    and, in the stable-first layout, the shared inputs at the head of it and
    the answer-format reminder at its end."""


class ChatAdapter(_SharedPrefix, _SameSystemMessage, dspy.ChatAdapter):
    """DSPy's ChatAdapter with the system message built once per signature
    and, in the stable-first layout, the shared inputs at the head of it and
    the answer-format reminder at its end; its fallback for an unparsable
    answer is this module's JSONAdapter, so the retry has the same layout."""

    def _make_json_adapter_fallback(self):
        fallback = JSONAdapter(use_native_function_calling=self.use_native_function_calling,
                               parallel_tool_calls=self.parallel_tool_calls)
        fallback.layout = self.layout
        return fallback


def make_adapter(kind: str, layout: str = "stable_first") -> dspy.Adapter:
    """The adapter a recipe names (``json`` or ``chat``) for a prompt layout
    (``stable_first`` or ``query_first``)."""
    adapter = JSONAdapter() if kind == "json" else ChatAdapter()
    adapter.layout = check_layout(layout)
    return adapter


def field_type(spec: FieldSpec) -> Any:
    """The Python annotation of a declared field: a ``str`` with ``enum``
    values is a ``Literal`` (JSON-schema constrained where the backend
    supports it; any other answer is a parse error, retried)."""
    if spec.enum:
        return LiteralType[tuple(spec.enum)]
    return PY_TYPES[spec.type or "str"]


def build_signature(spec: AgentSpec, contract: Contract, layout: str = "stable_first") -> type[dspy.Signature]:
    """The agent's DSPy signature: contract inputs it reads (in the order of
    the prompt ``layout``), contract outputs (descriptions overridable in YAML)
    and any extra outputs it declares."""
    fields: dict[str, tuple[type, Any]] = {}
    for name in order_inputs(spec.inputs if spec.inputs is not None else contract.default_inputs, layout):
        doc = contract.inputs[name]
        fields[name] = (PY_TYPES[doc.type or "str"], dspy.InputField(desc=doc.desc))
    inputs = set(fields)
    for name, doc in contract.outputs.items():
        own = spec.outputs.get(name)
        desc = own.desc if own is not None and own.desc else doc.desc
        fields[answer_name(name, inputs)] = (field_type(doc), dspy.OutputField(desc=desc))
    for name, own in spec.outputs.items():
        if name not in contract.outputs:
            fields[answer_name(name, inputs)] = (field_type(own), dspy.OutputField(desc=own.desc))
    class_name = "".join(part.capitalize() for part in spec.name.replace("-", "_").split("_")) or "Agent"
    return dspy.make_signature(fields, spec.instructions, signature_name=class_name)


class Agent(dspy.Module):
    """One agent role: a ``dspy.Predict`` on its own model, with bounded
    retries that feed the parse error back when the answer is malformed."""

    def __init__(self, spec: AgentSpec, contract: Contract, lm: dspy.LM, max_parse_retries: int = 2,
                 layout: str = "stable_first"):
        super().__init__()
        self.spec = spec
        self.contract = contract
        self.max_parse_retries = max_parse_retries
        self.layout = layout
        config = {}
        if spec.temperature is not None:
            config["temperature"] = spec.temperature
        if spec.max_tokens is not None:
            config["max_tokens"] = spec.max_tokens
        self.predict = dspy.Predict(build_signature(spec, contract, layout), **config)
        self.predict.lm = lm
        # per-record demos: the nearest labeled precedents (set by the compiler from `demos:`)
        self.nearest = None

    def demos_for(self, record: dict | None) -> list:
        """The demos shown for ``record``: the nearest precedents of its query
        when the agent selects them, else the agent's demos; either way only
        those whose ``when:`` holds for the record (a demo without one always)."""
        demos = self.predict.demos
        if self.nearest is not None and record is not None:
            demos = [dspy.Example(**row) for row in self.nearest.select(str(record.get("query", "")))]
        if record is None:
            return list(demos)
        return [d for d in demos if not _when(d) or parse_when(_when(d)).holds(record)]

    @property
    def input_names(self) -> list[str]:
        return list(self.predict.signature.input_fields)

    @property
    def output_names(self) -> list[str]:
        return list(self.predict.signature.output_fields)

    def fingerprint(self) -> dict:
        """Everything about this agent that changes its answers (used in stage
        cache keys): the current (possibly optimized) instructions, fields,
        demos, sampling config. The model identity is added by the caller."""
        sig = self.predict.signature
        return {
            "instructions": sig.instructions,
            "inputs": {k: [str(v.annotation), v.json_schema_extra.get("desc")] for k, v in sig.input_fields.items()},
            "outputs": {k: [str(v.annotation), v.json_schema_extra.get("desc")] for k, v in sig.output_fields.items()},
            "demos": [dict(d) for d in self.predict.demos],
            "nearest": self.nearest.identity if self.nearest is not None else None,
            "config": dict(self.predict.config),
            "max_parse_retries": self.max_parse_retries,
            "input_order": list(sig.input_fields),  # hashing sorts the dict above
            "layout": self.layout,  # where the adapter puts the shared inputs and the format reminder
        }

    def forward(self, **context: Any) -> dspy.Prediction:
        # a field a skipped stage did not write reads as empty
        inputs = {name: neutralize(context[name] if context.get(name) is not None else EMPTY_VALUES.get(
            self.contract.inputs[name].type if name in self.contract.inputs else "str", ""))
            for name in self.input_names}
        demos = self.demos_for(CURRENT_RECORD.get())
        shown = {} if demos == self.predict.demos else {"demos": demos}
        problem: str | None = None
        raw: str | None = None
        for attempt in range(self.max_parse_retries + 1):
            if attempt == 0:
                predictor, extra = self.predict, {}
            else:
                # Same instructions and demos, plus what was wrong with the
                # last answer, so the model can fix it.
                retry_sig = self.predict.signature.append(
                    "format_error", dspy.InputField(desc="Why your previous answer could not be used. "
                                                         "Answer again in exactly the required format."))
                predictor = dspy.Predict(retry_sig, **self.predict.config)
                predictor.lm = self.predict.lm
                predictor.demos = self.predict.demos
                extra = {"format_error": problem}
            try:
                with parse_attempt(attempt), watch_truncation() as cut:
                    prediction = predictor(**inputs, **extra, **shown)
            except AdapterParseError as error:
                problem, raw = _short_error(error), getattr(error, "lm_response", None)
                continue
            if not cut:
                return prediction
            # DSPy repairs JSON cut off at max_tokens into plausible-looking
            # values; a truncated answer is never accepted as data.
            problem = ("Your previous answer was cut off at the token limit. Answer again, more briefly, "
                       "in exactly the required format.")
            raw = cut[-1]
        raise OutputParseError(f"agent {self.spec.name!r}: no usable answer after {self.max_parse_retries + 1} "
                               f"attempt(s): {problem}", raw=raw)


def _when(demo: Any) -> str | None:
    """A demo's ``when:`` condition text, if it carries one."""
    value = demo.get("when") if hasattr(demo, "get") else None
    return value if isinstance(value, str) else None


def _short_error(error: Exception) -> str:
    text = str(error)
    # DSPy's message repeats the whole raw answer; the model needs the reason.
    head = text.split("\n\nLM Response:")[0]
    return head[:600]
