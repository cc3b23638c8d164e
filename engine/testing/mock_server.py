"""A local, OpenAI-compatible mock LLM server for tests and benchmarks.

The server speaks just enough of the OpenAI HTTP API for DSPy (and plain
HTTP clients) to run end to end without a real model or any network access
beyond loopback:

* ``POST /v1/chat/completions`` (non-streaming), with ``n`` choices;
* ``POST /v1/responses`` (non-streaming), for ``dspy.LM(..., model_type="responses")``;
* ``GET /v1/models``;
* anything else answers 404 with an OpenAI-style error body.

The paths are also accepted without the ``/v1`` prefix, so an ``api_base``
given with or without ``/v1`` both work.

The default responder understands DSPy's adapter prompts: for a JSONAdapter
prompt (or a ``response_format`` of ``json_object``/``json_schema``) it answers
with a JSON object holding every output field, filled with the scripted,
type-valid values the fake engine also answers (:mod:`aidsafe.testing._answers`:
enums, booleans and 1-5 scores vary with the conversation, deterministically); for a ChatAdapter prompt it answers with the
``[[ ## field ## ]]`` sections.  Anything else gets a deterministic echo.

Faults (error statuses, truncated answers) are injected from a seeded
``random.Random`` so a run with the same seed and the same request order
sees the same faults.

Only the standard library is used, and the server binds to 127.0.0.1 only.

Example::

    with MockOpenAIServer(latency=0.05) as server:
        lm = dspy.LM("openai/mock-model", api_base=server.url, api_key="test")
        ...
        assert server.calls == 1

Command line (runs until Ctrl-C)::

    python -m aidsafe.testing.mock_server --port 8000 --latency 0.2
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

from aidsafe.testing._answers import Script, conversation_seed, schema_notes
from aidsafe.testing._prompt import output_field_docs

__all__ = ["MockOpenAIServer", "default_responder", "main"]

#: The only interface the server ever binds to: it must never be reachable
#: from another machine.
HOST = "127.0.0.1"

#: How many request bodies ``MockOpenAIServer.log`` keeps (oldest dropped first).
LOG_LIMIT = 10_000

Responder = Callable[[list, dict], str]

_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_RESPONSES_PATHS = ("/v1/responses", "/responses")
_MODELS_PATHS = ("/v1/models", "/models")

_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}


# --------------------------------------------------------------------------
# Default responder: deterministic answers shaped like what DSPy expects.
# --------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """Plain text of an OpenAI message ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict):
                # Chat parts use "text"; Responses parts use "text" too
                # (input_text/output_text); images etc. carry no text.
                text = part.get("text")
                if isinstance(text, str):
                    pieces.append(text)
        return "\n".join(pieces)
    return str(content)


def _word_count(text: str) -> int:
    return len(text.split())


def _json_schema_from_body(body: dict) -> dict | None:
    """The structured-output schema a request asks for, if any.

    Chat Completions: ``response_format={"type": "json_schema", "json_schema": {"schema": ...}}``;
    Responses API: ``text={"format": {"type": "json_schema", "schema": ...}}``.
    """
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        inner = fmt.get("json_schema") or {}
        schema = inner.get("schema") if isinstance(inner, dict) else None
        return schema if isinstance(schema, dict) else None
    text_opt = body.get("text")
    if isinstance(text_opt, dict):
        fmt = text_opt.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
            return fmt["schema"]
    return None


def _wants_json(body: dict, system: str, last_user: str) -> bool:
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        return True
    text_opt = body.get("text")
    if isinstance(text_opt, dict) and isinstance(text_opt.get("format"), dict):
        if text_opt["format"].get("type") in ("json_object", "json_schema"):
            return True
    return "Outputs will be a JSON object" in system or "Respond with a JSON object" in last_user


def default_responder(messages: list, body: dict) -> str:
    """Deterministic reply that DSPy's adapters can parse, from the answer
    synthesis the fake engine shares (:mod:`aidsafe.testing._answers`).

    * A structured-output schema in the request -> a JSON object valid against it.
    * A JSONAdapter prompt (or JSON mode) -> a JSON object with every output
      field listed under "Your output fields are:", each a scripted value of
      its type: ``str`` -> ``mock <field> <8 hex>``, ``list[...]`` -> 2 items,
      and enums (``Literal[...]``, "Exactly one of: ..."), ``bool`` and
      ``int`` (within the range its description gives, else 1-5) picked by a
      hash of the conversation and the field's name, so they vary from record
      to record; fields with a JSON-schema note -> a value valid against it.
    * A ChatAdapter prompt -> ``[[ ## field ## ]]`` sections and the
      ``[[ ## completed ## ]]`` marker.
    * Otherwise -> ``"Mock reply <hash>: <last user text>"``.
    """
    system = "\n".join(_text_of(m.get("content")) for m in messages
                       if isinstance(m, dict) and m.get("role") in ("system", "developer"))
    users = [_text_of(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last_user = users[-1] if users else ""
    # The conversation, not the whole body: DSPy varies sampling options
    # (e.g. temperature per rollout) and the answer should depend on the input.
    script = Script(conversation_seed(system, "\n".join(users)))

    schema = _json_schema_from_body(body)
    if schema is not None:
        return json.dumps(script.from_schema(schema, "value", schema.get("$defs") or schema.get("definitions") or {}))

    docs = output_field_docs(system)
    values = script.fields(docs, schema_notes(system))

    if _wants_json(body, system, last_user):
        return json.dumps(values if docs else {"response": script.text("response")})

    if docs and ("[[ ## completed ## ]]" in system or "[[ ## completed ## ]]" in last_user):
        sections = []
        for name, value in values.items():
            # ChatAdapter reads strings verbatim and everything else as JSON.
            rendered = value if isinstance(value, str) else json.dumps(value)
            sections.append(f"[[ ## {name} ## ]]\n{rendered}")
        sections.append("[[ ## completed ## ]]")
        return "\n\n".join(sections)

    return f"Mock reply {script.seed[:8]}: {last_user[:200]}".rstrip()


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    # Daemon handler threads: a client holding a keep-alive connection open
    # must not keep the process (or stop()) waiting.
    daemon_threads = True
    block_on_close = False
    # The socketserver default backlog of 5 makes bursts of concurrent
    # connections (benchmarks fire hundreds) fail with connection resets.
    request_queue_size = 1024
    mock: "MockOpenAIServer"

    def handle_error(self, request, client_address):
        # Clients (httpx pools, timed-out tests) drop connections all the
        # time; the default prints a traceback to stderr, which we promise not to.
        pass


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in separate writes; without this, Nagle's
    # algorithm holds each keep-alive response ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    # HTTP/1.1 so clients can reuse connections (every response carries a
    # Content-Length, which keep-alive requires).
    protocol_version = "HTTP/1.1"
    server_version = "MockOpenAI/1.0"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass  # quiet: no per-request lines on stderr

    def _dispatch(self):
        self.server.mock._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Skip trailers up to the blank line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, status: int, payload: Any, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to tell it


class MockOpenAIServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 with scripted behaviour.

    Args:
        responder: ``responder(messages, body) -> str`` giving the assistant
            text; defaults to :func:`default_responder`.  Called once per
            choice.  If it raises, the request is answered with a 500.
        latency: seconds each completion takes.  Every request sleeps in its
            own handler thread, so concurrent requests overlap (unless
            ``max_concurrency`` caps how many are in progress).
        fail_rate: probability that a completion request is answered with an
            error status drawn from ``fail_statuses`` instead.  A 429 is sent
            at once (a rate limiter rejects before doing work); other statuses
            are sent after ``latency`` (the server failed mid-work).
        fail_statuses: statuses an injected failure picks from, uniformly.
        retry_after: if set, 429 and 503 responses carry ``Retry-After``
            (seconds) and ``retry-after-ms`` headers.
        truncate_rate: probability that a successful completion is cut to
            half its length with ``finish_reason="length"`` (Responses API:
            ``status="incomplete"``).
        seed: seeds the fault-injection RNG; the same seed and request order
            give the same faults.
        model: the model id reported by ``/v1/models`` and used in responses
            when the request names none.
        max_concurrency: if set, at most this many completions are in progress
            at once; the rest queue (as on a saturated server).
        port: port to bind on 127.0.0.1; 0 picks a free one.

    Attributes:
        url: ``"http://127.0.0.1:PORT/v1"`` (available once started).
        calls: successful completions served (chat and responses).
        requests: every request received, including failed and unknown ones.
        failures: ``{status: count}`` of every error response sent.
        log: the JSON request bodies received, oldest first (last ``LOG_LIMIT``).
        paths: ``"METHOD /path"`` of every request received (same bound).
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        fail_rate: float = 0.0,
        fail_statuses=(429, 500),
        retry_after: float | None = None,
        truncate_rate: float = 0.0,
        seed: int = 0,
        model: str = "mock-model",
        max_concurrency: int | None = None,
        port: int = 0,
    ):
        if latency < 0:
            raise ValueError("latency must be >= 0")
        for name, rate in (("fail_rate", fail_rate), ("truncate_rate", truncate_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        fail_statuses = tuple(int(s) for s in fail_statuses)
        if fail_rate > 0 and not fail_statuses:
            raise ValueError("fail_statuses must not be empty when fail_rate > 0")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1 or None")

        self.responder: Responder = responder or default_responder
        self.latency = float(latency)
        self.fail_rate = float(fail_rate)
        self.fail_statuses = fail_statuses
        self.retry_after = retry_after
        self.truncate_rate = float(truncate_rate)
        self.seed = seed
        self.model = model
        self.max_concurrency = max_concurrency
        self._port = int(port)

        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._next_id = 0

        self.calls = 0
        self.requests = 0
        self.failures: dict[int, int] = {}
        self.log: list[dict] = []
        self.paths: list[str] = []

    # ----- lifecycle -------------------------------------------------------

    def start(self) -> "MockOpenAIServer":
        """Bind to 127.0.0.1 and serve in a background thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("server already started")
        server = _HTTPServer((HOST, self._port), _Handler)
        server.mock = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"MockOpenAIServer:{server.server_address[1]}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (safe to call twice)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "MockOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (raises if not started)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL for OpenAI clients, ``http://127.0.0.1:PORT/v1``."""
        return f"http://{HOST}:{self.port}/v1"

    def reset(self) -> None:
        """Zero the counters and clear the logs (the RNG keeps its position)."""
        with self._lock:
            self.calls = 0
            self.requests = 0
            self.failures = {}
            self.log = []
            self.paths = []

    # ----- request handling ------------------------------------------------

    def _record(self, bucket: list, item: Any) -> None:
        # Caller holds the lock.  A list (not a deque) because callers expect
        # list semantics; trimming one item at a time keeps it bounded cheaply.
        bucket.append(item)
        if len(bucket) > LOG_LIMIT:
            del bucket[0]

    def _error(self, handler: _Handler, status: int, message: str, headers: dict | None = None) -> None:
        with self._lock:
            self.failures[status] = self.failures.get(status, 0) + 1
        err_type, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        handler.send_json(status, {"error": {"message": message, "type": err_type, "param": None, "code": code}},
                          headers)

    def _draw_faults(self) -> tuple[int | None, bool]:
        """(injected status or None, truncate?) from the seeded RNG.

        Always draws the same three numbers per request so the fault sequence
        for a seed does not depend on which rates are non-zero.
        """
        with self._lock:
            r_fail, r_status, r_trunc = self._rng.random(), self._rng.random(), self._rng.random()
        status = None
        if r_fail < self.fail_rate and self.fail_statuses:
            status = self.fail_statuses[min(int(r_status * len(self.fail_statuses)), len(self.fail_statuses) - 1)]
        return status, r_trunc < self.truncate_rate

    def _handle(self, handler: _Handler) -> None:
        method = handler.command
        path = urlsplit(handler.path).path.rstrip("/") or "/"
        try:
            raw = handler.read_body()
        except (ValueError, OSError):
            handler.close_connection = True
            raw = None
        with self._lock:
            self.requests += 1
            self._record(self.paths, f"{method} {path}")
        if raw is None:
            return self._error(handler, 400, "Could not read the request body.")

        if path in _MODELS_PATHS:
            if method != "GET":
                return self._error(handler, 405, f"Method {method} not allowed on {path}.")
            return handler.send_json(200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "mock"}]})

        if path in _CHAT_PATHS or path in _RESPONSES_PATHS:
            if method != "POST":
                return self._error(handler, 405, f"Method {method} not allowed on {path}.")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return self._error(handler, 400, "Request body is not valid JSON.")
            if not isinstance(body, dict):
                return self._error(handler, 400, "Request body must be a JSON object.")
            with self._lock:
                self._record(self.log, body)
            if body.get("stream"):
                return self._error(handler, 400, "The mock server does not support stream=true.")
            if path in _CHAT_PATHS:
                return self._complete(handler, body, self._chat_messages(body), self._chat_payload)
            return self._complete(handler, body, self._responses_messages(body), self._responses_payload)

        return self._error(handler, 404, f"Unknown path: {method} {path}")

    @staticmethod
    def _chat_messages(body: dict) -> list | None:
        messages = body.get("messages")
        return messages if isinstance(messages, list) else None

    @staticmethod
    def _responses_messages(body: dict) -> list | None:
        """Responses-API ``instructions``/``input`` as chat-style messages."""
        messages: list[dict] = []
        if isinstance(body.get("instructions"), str):
            messages.append({"role": "system", "content": body["instructions"]})
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        if not isinstance(items, list):
            return None
        for item in items:
            if isinstance(item, dict) and "role" in item:
                messages.append({"role": item["role"], "content": _text_of(item.get("content"))})
        return messages

    def _complete(self, handler: _Handler, body: dict, messages: list | None, payload_fn) -> None:
        if messages is None:
            return self._error(handler, 400, "Request has no usable messages/input.")
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            return self._error(handler, 400, "n must be a positive integer.")

        status, truncate = self._draw_faults()
        fault_headers = {}
        if status in (429, 503) and self.retry_after is not None:
            fault_headers = {"Retry-After": f"{self.retry_after:g}",
                             "retry-after-ms": str(int(self.retry_after * 1000))}
        if status == 429:
            return self._error(handler, 429, "Rate limit reached (injected by mock server).", fault_headers)

        if self._slots is not None:
            self._slots.acquire()
        try:
            if self.latency:
                time.sleep(self.latency)  # in this handler thread only, so requests overlap
            if status is not None:
                return self._error(handler, status, f"Injected failure (status {status}).", fault_headers)
            try:
                texts = [self.responder(messages, body) for _ in range(n)]
                if not all(isinstance(t, str) for t in texts):
                    raise TypeError("responder must return a str")
            except Exception as exc:  # a broken responder is a test bug; surface it to the client
                return self._error(handler, 500, f"Mock responder failed: {type(exc).__name__}: {exc}")
        finally:
            if self._slots is not None:
                self._slots.release()

        if truncate:
            texts = [t[: len(t) // 2] for t in texts]
        prompt_tokens = sum(_word_count(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        with self._lock:
            self._next_id += 1
            serial = self._next_id
            self.calls += 1
        handler.send_json(200, payload_fn(body, texts, truncate, prompt_tokens, serial))

    def _chat_payload(self, body, texts, truncated, prompt_tokens, serial) -> dict:
        completion_tokens = sum(_word_count(t) for t in texts)
        return {
            "id": f"chatcmpl-mock{serial:08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "system_fingerprint": "mock",
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": text},
                 "logprobs": None, "finish_reason": "length" if truncated else "stop"}
                for i, text in enumerate(texts)
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _responses_payload(self, body, texts, truncated, prompt_tokens, serial) -> dict:
        # The Responses API has no ``n``: one output message.
        text = texts[0]
        output_tokens = _word_count(text)
        return {
            "id": f"resp_mock{serial:08d}",
            "object": "response",
            "created_at": int(time.time()),
            "model": body.get("model") or self.model,
            "status": "incomplete" if truncated else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
            "error": None,
            "output": [{
                "type": "message", "id": f"msg_mock{serial:08d}", "role": "assistant",
                "status": "incomplete" if truncated else "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }],
            "usage": {"input_tokens": prompt_tokens, "output_tokens": output_tokens,
                      "total_tokens": prompt_tokens + output_tokens},
        }


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run a mock server on 127.0.0.1 until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m aidsafe.testing.mock_server",
                                     description="OpenAI-compatible mock LLM server (127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per completion")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="probability of an injected error")
    parser.add_argument("--fail-statuses", default="429,500", help="comma-separated statuses to inject")
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on 429/503")
    parser.add_argument("--truncate-rate", type=float, default=0.0, help="probability of finish_reason=length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="mock-model")
    parser.add_argument("--max-concurrency", type=int, default=None)
    args = parser.parse_args(argv)

    server = MockOpenAIServer(
        latency=args.latency, fail_rate=args.fail_rate,
        fail_statuses=[int(s) for s in args.fail_statuses.split(",") if s.strip()],
        retry_after=args.retry_after, truncate_rate=args.truncate_rate, seed=args.seed,
        model=args.model, max_concurrency=args.max_concurrency, port=args.port,
    ).start()
    print(f"Mock OpenAI server at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"served {server.calls} completions, {server.requests} requests, failures={server.failures}",
              flush=True)


if __name__ == "__main__":
    main()
