"""Tests for aidsafe.testing.mock_server (loopback only, each well under a second or two)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

import pytest

# LiteLLM (imported by dspy) otherwise fetches its model cost map from the internet at import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO_ROOT = Path(__file__).resolve().parents[2]
try:
    import aidsafe  # noqa: F401
except ImportError:  # plain `pytest` puts tests/ (not the repo root) on sys.path
    sys.path.insert(0, str(REPO_ROOT))

import dspy  # noqa: E402
import pydantic  # noqa: E402

from aidsafe.testing.mock_server import MockOpenAIServer, default_responder  # noqa: E402


def _post(url: str, body: dict, timeout: float = 5.0):
    """POST JSON; returns (status, headers, parsed body) also for HTTP errors."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer test"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, json.loads(err.read())


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def _chat(server, content="hello there", **extra):
    body = {"model": "mock-model", "messages": [{"role": "user", "content": content}], **extra}
    return _post(server.url + "/chat/completions", body)


# --------------------------------------------------------------------------- basics


def test_urllib_completion_and_counters():
    with MockOpenAIServer() as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
        status, _, data = _chat(server, "hello there general kenobi")
        assert status == 200
        for key in ("id", "object", "created", "model", "choices", "usage"):
            assert key in data
        assert data["object"] == "chat.completion"
        choice = data["choices"][0]
        assert choice["finish_reason"] == "stop"
        assert choice["message"]["role"] == "assistant"
        content = choice["message"]["content"]
        assert "hello there general kenobi" in content
        assert data["usage"]["prompt_tokens"] == 4
        assert data["usage"]["completion_tokens"] == len(content.split())
        assert data["usage"]["total_tokens"] == 4 + len(content.split())
        # Deterministic: same input, same text.
        assert _chat(server, "hello there general kenobi")[2]["choices"][0]["message"]["content"] == content
        assert server.calls == 2 and server.requests == 2 and server.failures == {}
        assert server.log[-1]["messages"][0]["content"] == "hello there general kenobi"
        assert server.paths[-1] == "POST /v1/chat/completions"


def test_binds_loopback_only_and_stops():
    server = MockOpenAIServer().start()
    try:
        assert server._server.server_address[0] == "127.0.0.1"
        port = server.port
    finally:
        server.stop()
    server.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_n_choices_models_404_and_stream_rejected():
    with MockOpenAIServer(model="my-model") as server:
        status, _, data = _chat(server, n=3)
        assert status == 200 and [c["index"] for c in data["choices"]] == [0, 1, 2]

        assert _get(server.url + "/models") == (200, {"object": "list", "data": [
            {"id": "my-model", "object": "model", "created": 0, "owned_by": "mock"}]})

        status, body = _get(server.url + "/nope")
        assert status == 404 and body["error"]["code"] == "not_found"

        status, _, body = _chat(server, stream=True)
        assert status == 400 and "stream" in body["error"]["message"]

        status, _, body = _post(server.url + "/chat/completions", {"model": "x"})
        assert status == 400
        assert server.calls == 1
        assert server.failures == {404: 1, 400: 2}
        assert server.requests == 5


def test_custom_responder_and_responder_errors():
    seen = []

    def responder(messages, body):
        seen.append((messages, body))
        if messages[-1]["content"] == "boom":
            raise RuntimeError("kaput")
        return "custom:" + messages[-1]["content"]

    with MockOpenAIServer(responder) as server:
        assert _chat(server, "hi")[2]["choices"][0]["message"]["content"] == "custom:hi"
        assert seen[0][1]["model"] == "mock-model"
        status, _, body = _chat(server, "boom")
        assert status == 500 and "kaput" in body["error"]["message"]


# --------------------------------------------------------------------------- default responder


class Citation(pydantic.BaseModel):
    source: str
    page: int


class RichSignature(dspy.Signature):
    """Answer with many kinds of fields."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField()
    tags: list[str] = dspy.OutputField()
    ok: bool = dspy.OutputField()
    count: int = dspy.OutputField()
    score: float = dspy.OutputField()
    kind: Literal["alpha", "beta"] = dspy.OutputField()
    weights: dict[str, int] = dspy.OutputField()
    maybe: int | None = dspy.OutputField()
    cite: Citation = dspy.OutputField()


def test_default_responder_json_adapter_prompt():
    messages = dspy.JSONAdapter().format(RichSignature, demos=[], inputs={"question": "Why?"})
    with MockOpenAIServer() as server:
        status, _, data = _post(server.url + "/chat/completions", {"model": "m", "messages": messages})
    assert status == 200
    content = data["choices"][0]["message"]["content"]
    obj = json.loads(content)
    assert list(obj) == list(RichSignature.output_fields)
    assert isinstance(obj["answer"], str) and obj["answer"].startswith("mock answer ")
    assert len(obj["tags"]) == 2 and all(isinstance(t, str) for t in obj["tags"]) and len(set(obj["tags"])) == 2
    assert isinstance(obj["ok"], bool) and obj["count"] in range(1, 6) and obj["score"] in (0.1, 0.3, 0.5, 0.7, 0.9)
    assert obj["kind"] in ("alpha", "beta")
    assert obj["cite"]["page"] in range(1, 6) and isinstance(obj["cite"]["source"], str)
    # And DSPy itself accepts it.
    parsed = dspy.JSONAdapter().parse(RichSignature, content)
    assert parsed["cite"] == Citation(source=obj["cite"]["source"], page=obj["cite"]["page"])
    assert parsed["maybe"] in range(1, 6)
    # Deterministic in the input, different for a different input.
    assert default_responder(messages, {}) == content
    other = dspy.JSONAdapter().format(RichSignature, demos=[], inputs={"question": "How?"})
    assert json.loads(default_responder(other, {}))["answer"] != obj["answer"]


def test_default_responder_varies_choices_by_input():
    """Not always the first enum value, `true` and 3 (issue 25): over a few
    inputs every enum value and both booleans come up, and ints stay 1-5."""
    answers = [json.loads(default_responder(
        dspy.JSONAdapter().format(RichSignature, demos=[], inputs={"question": f"question {i}"}), {}))
        for i in range(12)]
    assert {a["kind"] for a in answers} == {"alpha", "beta"}
    assert {a["ok"] for a in answers} == {True, False}
    assert {a["count"] for a in answers} <= set(range(1, 6)) and len({a["count"] for a in answers}) >= 3


def test_default_responder_chat_adapter_and_schema():
    messages = dspy.ChatAdapter().format(RichSignature, demos=[], inputs={"question": "Why?"})
    parsed = dspy.ChatAdapter().parse(RichSignature, default_responder(messages, {}))
    assert parsed["kind"] in ("alpha", "beta") and parsed["tags"][0] and parsed["cite"].page in range(1, 6)

    schema = {"type": "object", "properties": {"x": {"type": "integer", "minimum": 7, "maximum": 9},
                                               "y": {"$ref": "#/$defs/Y"}},
              "$defs": {"Y": {"type": "array", "items": {"enum": ["p", "q"]}}}}
    body = {"response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": schema}}}
    seen = [json.loads(default_responder([{"role": "user", "content": f"hi {i}"}], body)) for i in range(10)]
    assert all(set(v) == {"x", "y"} and v["x"] in (7, 8, 9) and len(v["y"]) == 2 and set(v["y"]) <= {"p", "q"}
               for v in seen)
    assert {item for v in seen for item in v["y"]} == {"p", "q"}


def test_judge_fields_get_valid_scores_and_labels():
    """An eval judge's `score` is a str described as an integer range, a
    label judge's an "Exactly one of:" list: the answers are in them."""
    sig = dspy.Signature("record: str -> reason: str, score: str, verdict: str", "Judge.")
    sig = sig.with_updated_fields("score", desc="A single integer from 1 to 5, nothing else.")
    sig = sig.with_updated_fields("verdict", desc="Exactly one of: A, B, tie.")
    seen = [json.loads(default_responder(dspy.JSONAdapter().format(sig, demos=[], inputs={"record": f"r{i}"}), {}))
            for i in range(15)]
    assert {v["score"] for v in seen} <= {"1", "2", "3", "4", "5"} and len({v["score"] for v in seen}) >= 3
    assert {v["verdict"] for v in seen} == {"A", "B", "tie"}
    assert all(len(v["reason"].split()) == 3 and not v["reason"].split()[2].isdigit() for v in seen)


# --------------------------------------------------------------------------- faults


def test_fail_rate_429_has_retry_after():
    with MockOpenAIServer(fail_rate=1.0, fail_statuses=(429,), retry_after=2) as server:
        status, headers, body = _chat(server)
        assert status == 429
        assert headers["Retry-After"] == "2"
        assert headers["retry-after-ms"] == "2000"
        assert body["error"]["type"] == "rate_limit_error"
        assert server.failures == {429: 1} and server.calls == 0 and server.requests == 1


def test_faults_are_deterministic_per_seed():
    def outcomes(seed):
        with MockOpenAIServer(fail_rate=0.5, fail_statuses=(429, 500, 503), truncate_rate=0.3, seed=seed) as server:
            result = []
            for _ in range(20):
                status, _, data = _chat(server)
                result.append((status, data["choices"][0]["finish_reason"] if status == 200 else None))
            return result

    first = outcomes(7)
    assert first == outcomes(7)
    assert {s for s, _ in first} > {200}  # some failures, some successes
    assert outcomes(8) != first


def test_truncation():
    with MockOpenAIServer(truncate_rate=1.0) as server:
        full = default_responder([{"role": "user", "content": "abc def"}], {})
        data = _chat(server, "abc def")[2]
        assert data["choices"][0]["finish_reason"] == "length"
        assert data["choices"][0]["message"]["content"] == full[: len(full) // 2]


# --------------------------------------------------------------------------- concurrency


def _parallel(server, count):
    errors = []

    def worker(i):
        try:
            assert _chat(server, f"request {i}")[0] == 200
        except Exception as exc:  # collected, re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return time.perf_counter() - start


class _Peak:
    """A responder that counts how many requests are inside it at once."""

    def __init__(self, hold: float = 0.2):
        self.hold, self.active, self.peak = hold, 0, 0
        self.lock = threading.Lock()

    def __call__(self, messages, body):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.hold)
        with self.lock:
            self.active -= 1
        return default_responder(messages, body)


def test_concurrent_requests_overlap():
    peak = _Peak()
    with MockOpenAIServer(responder=peak) as server:
        _parallel(server, 8)
        assert server.calls == 8
    assert peak.peak >= 2, peak.peak  # served side by side, not one after another


def test_max_concurrency_limits_overlap():
    peak = _Peak(hold=0.1)
    with MockOpenAIServer(responder=peak, max_concurrency=2) as server:
        _parallel(server, 8)
        assert server.calls == 8
    assert peak.peak == 2, peak.peak


# --------------------------------------------------------------------------- DSPy integration


def _lm(server, **kwargs):
    return dspy.LM("openai/mock-model", api_base=server.url, api_key="test", cache=False, num_retries=0, **kwargs)


def test_dspy_predict_json_adapter(no_internet):
    with MockOpenAIServer() as server:
        lm = _lm(server)
        with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
            pred = dspy.Predict("question -> answer")(question="What is 2+2?")
        assert pred.answer.startswith("mock answer ")
        # DSPy 3.4 routes openai/<model> + api_base to its native lm15 engine,
        # which posts a bare Chat Completions body.
        assert server.paths == ["POST /v1/chat/completions"]
        assert set(server.log[0]) >= {"model", "messages"}
        assert server.log[0]["model"] == "mock-model"
        # Usage is the server's word count of the reply, passed through by DSPy.
        reply = json.dumps({"answer": pred.answer})
        assert lm.history[-1]["usage"]["completion_tokens"] == len(reply.split())


def test_dspy_responses_model_type(no_internet):
    with MockOpenAIServer() as server:
        with dspy.context(lm=_lm(server, model_type="responses"), adapter=dspy.JSONAdapter()):
            pred = dspy.Predict("question -> answer")(question="What is 2+2?")
        assert pred.answer.startswith("mock answer ")
        assert server.paths == ["POST /v1/responses"]
        assert {"model", "input", "instructions"} <= set(server.log[0])


def test_dspy_retries_honour_retry_after(no_internet):
    # Seed 3 at fail_rate 0.5: the first request fails, the second succeeds.
    with MockOpenAIServer(fail_rate=0.5, fail_statuses=(429,), retry_after=0.05, seed=3) as server:
        lm = dspy.LM("openai/mock-model", api_base=server.url, api_key="test", cache=False, num_retries=1)
        start = time.perf_counter()
        with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
            pred = dspy.Predict("question -> answer")(question="q")
        assert time.perf_counter() - start < 1.0  # slept Retry-After, not the 1 s+ default backoff
        assert pred.answer
        assert server.failures == {429: 1} and server.calls == 1 and server.requests == 2


# --------------------------------------------------------------------------- CLI


def test_cli_serves_until_interrupted():
    proc = subprocess.Popen(
        [sys.executable, "-m", "aidsafe.testing.mock_server", "--port", "0", "--latency", "0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        status, body = _get(url + "/models")
        assert status == 200 and body["data"][0]["id"] == "mock-model"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
        assert proc.returncode == 0
        assert "1 requests" in out
        assert err == ""  # quiet: no request logging
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
