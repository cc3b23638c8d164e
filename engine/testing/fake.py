"""A scripted fake model for tests and benchmarks.

It answers through DSPy's real adapters: it reads the output fields from the
rendered system prompt (JSONAdapter or ChatAdapter format) and returns a
well-formed answer, or a scripted one. Unscripted fields get the same values
the mock server answers (:mod:`aidsafe.testing._answers`): enums, booleans
and 1-5 scores vary with the request, so every branch is taken on some
record. No network, deterministic.

:class:`DryRunEngine` is the fake without scripts that ``aidsafe run
--dry-run`` (``--model '*=mock'``) runs a recipe on.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from dspy.lm15 import Message, Response, TextPart, Usage, response_to_events

from aidsafe.testing._answers import SCRIPT_VERSION, Script, answer_fields, conversation_seed
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


def default_value(name: str, type_text: str, call: FakeCall, desc: str = "") -> Any:
    """The scripted value of one field for ``call``: the mock server's answer
    to the same prompt (:mod:`aidsafe.testing._answers`), varied by the
    request (enums, booleans, 1-5 scores), deterministic."""
    return Script(conversation_seed(call.system, call.user)).value(type_text, name, desc)


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
        self.keep_calls = True  # keep each FakeCall in ``seen`` (tests read them; a long run must not)
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
            if self.keep_calls:
                self.seen.append(call)
        if self.latency:
            time.sleep(self.latency)
        answer = self._pick(call)
        if isinstance(answer, str):
            text = answer
        else:
            values = answer_fields(system, user)
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


#: The model string of the scripted model: ``aidsafe run --dry-run`` is
#: ``--model '*=mock'``, and a recipe may name it (``model: mock``) for CI.
MOCK_MODEL = "mock"


class DryRunEngine(FakeEngine):
    """The scripted model ``aidsafe run --dry-run`` runs a recipe on
    (``model: mock``): no scripts, no network, no weights. Every field gets
    the scripted answer of :mod:`aidsafe.testing._answers`, varied by record,
    so every branch is taken on some record and judges give valid 1-5
    scores. Its identity (``backend: mock``) is in every record's
    provenance, keys the cache apart from real models, and makes a resume
    refuse to mix its records with a real model's."""

    def __init__(self, latency: float = 0.0):
        super().__init__(latency=latency, name=MOCK_MODEL)
        self.keep_calls = False

    def identity(self) -> dict:
        """``{"backend": "mock", "model": "mock", "dry_run": true, "script": N}``
        (``script``: the version of the answer synthesis)."""
        return {"backend": "mock", "model": MOCK_MODEL, "dry_run": True, "script": SCRIPT_VERSION}
