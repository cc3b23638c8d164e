"""A scripted fake model for tests and benchmarks.

It answers through DSPy's real adapters: it reads the output field names from
the rendered system prompt (JSONAdapter or ChatAdapter format) and returns a
well-formed answer, or a scripted one. No network, deterministic.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from typing import Any, Callable

from dspy.lm15 import Message, Response, TextPart, Usage, response_to_events

from aidsafe.testing._prompt import input_field, output_fields

Answer = dict | str | Callable[["FakeCall"], "dict | str"]


class Cut(str):
    """An answer text that the fake reports as cut off at max_tokens
    (``finish_reason="length"``), like a real model that ran out of tokens."""


class FakeCall:
    """What the fake saw in one request."""

    def __init__(self, system: str, user: str, outputs: dict[str, str], config: dict):
        self.system = system
        self.user = user
        self.outputs = outputs  # output field -> type text
        self.config = config

    def input(self, name: str) -> str | None:
        """The rendered value of input field ``name`` (JSON/Chat adapters):
        in the user message, or at the head of the system message for the
        inputs shared by every record (the policy text)."""
        value = input_field(self.user, name)
        return value if value is not None else input_field(self.system, name)


def default_value(name: str, type_text: str, call: FakeCall) -> Any:
    """A plausible value for a field, derived from the input (deterministic)."""
    seed = int(hashlib.sha256(f"{name}|{call.user}".encode()).hexdigest()[:6], 16) % 1000
    if type_text.startswith("Literal["):  # an enum: its first value, like the mock server
        first = re.match(r"Literal\[\s*(['\"])(.*?)\1", type_text)
        if first:
            return first.group(2)
    if type_text.startswith("list"):
        return [f"{name} point one about the query", f"{name} point two ({seed})"]
    if type_text == "bool":
        return True
    if type_text == "int":
        return 3
    if type_text == "float":
        return 0.5
    if type_text.startswith("dict"):
        return {}
    return f"{name} text for the query ({seed})"


class FakeEngine:
    """A DSPy 3.4 engine (``complete(Request) -> Response``) with scripts.

    ``rules`` is a list of ``(substring, answer)``: the first rule whose
    substring occurs in the system prompt (where agent instructions live)
    answers. An answer is a dict of output fields (missing ones get default
    values), a raw string (sent as is: useful for malformed output), a list of
    such answers (used in turn, the last one repeating), or a callable of the
    :class:`FakeCall`. ``latency`` sleeps per call; ``calls`` counts calls.
    """

    def __init__(self, rules: list[tuple[str, Any]] | None = None, latency: float = 0.0, name: str = "fake"):
        self.rules = list(rules or [])
        self.latency = latency
        self.name = name
        self.calls = 0
        self.seen: list[FakeCall] = []
        self._turns: dict[int, int] = {}
        self._lock = threading.Lock()

    def identity(self) -> dict:
        """What the cache keys on: backend and name."""
        return {"backend": "fake", "model": self.name}

    def _pick(self, call: FakeCall) -> Any:
        for index, (needle, answer) in enumerate(self.rules):
            if needle in call.system:
                if isinstance(answer, list):
                    with self._lock:
                        turn = self._turns.get(index, 0)
                        self._turns[index] = turn + 1
                    answer = answer[min(turn, len(answer) - 1)]
                return answer(call) if callable(answer) else answer
        return {}

    def complete(self, request) -> Response:
        """Answer by the first matching rule (or plausible defaults)."""
        system = request.system if isinstance(request.system, str) else "".join(
            getattr(p, "text", "") for p in (request.system or []))
        user = "\n".join(m.text or "" for m in request.messages if m.role == "user")
        call = FakeCall(system, user, output_fields(system), {})
        with self._lock:
            self.calls += 1
            self.seen.append(call)
        if self.latency:
            time.sleep(self.latency)
        answer = self._pick(call)
        if isinstance(answer, str):
            text = answer
        else:
            values = {name: default_value(name, t, call) for name, t in call.outputs.items()}
            values.update(answer)
            text = json.dumps(values)
        tokens_in, tokens_out = len((system + user).split()), len(text.split())
        finish = "length" if isinstance(answer, Cut) else "stop"
        return Response(id=None, model=self.name, message=Message.assistant([TextPart(text)]), finish_reason=finish,
                        usage=Usage(input_tokens=tokens_in, output_tokens=tokens_out,
                                    total_tokens=tokens_in + tokens_out))

    def stream(self, request):
        """The complete answer as DSPy stream events."""
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Nothing to free."""
