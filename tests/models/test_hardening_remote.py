"""Issue #14 (items 12, 14, 15): remote models retry what is transient, key
the cache on the endpoint the environment picks, and seed every sample."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aidsafe.config._specs import ModelSpec
from aidsafe.models._engine import RemoteEngine, build_models, sample_index
from aidsafe.store._cache import Cache
from aidsafe.testing.mock_server import MockOpenAIServer

OK_BODY = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()


def error_body(message, code=None, kind="server_error"):
    return json.dumps({"error": {"message": message, "type": kind, "code": code}}).encode()


class ScriptedServer:
    """Answers each POST with the next (status, body) of a script."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - the base class's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests += 1
                status, data = outer.script.pop(0)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    servers = []

    def make(script):
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def call(url, model="openai/m", retries=3):
    engine = RemoteEngine(ModelSpec("m", model, api_base=url, num_retries=retries))
    engine.sleep = lambda seconds: None
    from dspy.lm15 import Message, Request

    return engine.complete(Request(model="m", messages=(Message.user("hi"),)))


@pytest.mark.parametrize("model", ["openai/m", "hosted_vllm/m"])
@pytest.mark.parametrize("first", [
    pytest.param((200, b"<html>502 Bad Gateway</html>"), id="200-not-json"),
    pytest.param((500, error_body("Incorrect API key provided: sk-abc", code="invalid_api_key")), id="500-api-key"),
    pytest.param((503, error_body("upstream authentication_error", kind="authentication_error")), id="503-auth-type"),
])
def test_transient_replies_are_retried(scripted, first, model):
    server = scripted([first, (200, OK_BODY)])
    response = call(server.url, model)
    assert response.text == "fine"
    assert server.requests == 2


@pytest.mark.parametrize("status", [401, 403])
def test_authentication_failures_are_not_retried(scripted, status):
    from dspy.utils.exceptions import LMAuthError

    server = scripted([(status, error_body("bad key", code="invalid_api_key", kind="invalid_request_error"))] * 3)
    with pytest.raises(LMAuthError):
        call(server.url)
    assert server.requests == 1


def test_the_endpoint_from_the_environment_is_part_of_the_cache_key(tmp_path, monkeypatch):
    """OPENAI_BASE_URL switched from server A to server B: B answers, not A's cache."""
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIDSAFE_TEST_KEY", "k")
    cache = Cache(tmp_path / "c")
    spec = {"m": ModelSpec("m", "openai/mock-model", api_key_env="AIDSAFE_TEST_KEY")}
    with MockOpenAIServer(responder=lambda m, b: "from A") as a, MockOpenAIServer(responder=lambda m, b: "from B") as b:
        answers, identities = [], []
        for server in (a, b, a):
            monkeypatch.setenv("OPENAI_BASE_URL", server.url)
            handle = build_models(spec, cache)["m"]
            identities.append(handle.identity["api_base"])
            answers.append(handle.lm("same prompt")[0])
        assert answers == ["from A", "from B", "from A"]
        assert identities == [a.url, b.url, a.url]
        assert (a.calls, b.calls) == (1, 1)  # the third call replays A's cached answer


def test_endpoint_variables_of_other_providers_count(monkeypatch):
    from aidsafe.models._engine import endpoint_from_env

    for name in ("HOSTED_VLLM_API_BASE", "OPENAI_BASE_URL", "OPENAI_API_BASE", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert endpoint_from_env("hosted_vllm/q") is None
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", "http://gpu:8000/v1")
    assert endpoint_from_env("hosted_vllm/q") == "http://gpu:8000/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://a/v1")
    monkeypatch.setenv("OPENAI_API_BASE", "http://b/v1")
    assert endpoint_from_env("openai/m") == "OPENAI_API_BASE=http://b/v1, OPENAI_BASE_URL=http://a/v1"
    assert endpoint_from_env("gpt-4o-mini") == endpoint_from_env("openai/m")
    # an api_base in the recipe wins, as it does for the client
    engine = RemoteEngine(ModelSpec("m", "openai/m", api_base="http://c/v1"))
    assert engine.identity()["api_base"] == "http://c/v1"


def test_remote_samples_carry_a_reproducible_seed(tmp_path):
    with MockOpenAIServer() as server:
        spec = {"m": ModelSpec("m", "openai/mock-model", api_base=server.url, params={"temperature": 0.9})}
        runs = []
        for _ in range(2):
            # no cache: each run reaches the server, which must see the same seeds
            handle = build_models(spec, Cache(tmp_path / "c", enabled=False))["m"]
            for index in range(3):
                with sample_index(index):
                    handle.lm("same prompt")
            runs.append([body.get("seed") for body in server.log[-3:]])
    assert runs[0] == runs[1]
    assert all(isinstance(seed, int) for seed in runs[0])
    assert len(set(runs[0])) == 3  # n samples differ


def test_a_seed_in_the_recipe_is_kept_and_varied_per_sample(tmp_path):
    with MockOpenAIServer() as server:
        spec = {"m": ModelSpec("m", "openai/mock-model", api_base=server.url, params={"temperature": 0.9, "seed": 7})}
        handle = build_models(spec, Cache(tmp_path / "c", enabled=False))["m"]
        for index in range(2):
            with sample_index(index):
                handle.lm("same prompt")
        assert [body.get("seed") for body in server.log] == [7, 8]


def test_inspection_keys_see_the_environment_endpoint_too(monkeypatch):
    """`diff`/`show` (spec identities) and `run --plan` (backend identities)
    must agree with a run on which server answers."""
    from aidsafe.models._inspect import spec_identity

    monkeypatch.setenv("OPENAI_BASE_URL", "http://a:1/v1")
    spec = ModelSpec("m", "openai/x")
    assert spec_identity(spec)["api_base"] == RemoteEngine(spec).identity()["api_base"] == "http://a:1/v1"


def test_remote_requests_skip_the_second_lm_layer_and_send_the_same_bytes(monkeypatch):
    """The caching engine is the one ``dspy.LM`` layer: a remote request goes
    straight to DSPy's provider client (no second history entry, no second
    price lookup), and the server receives exactly what the LM path sends."""
    from dspy.lm15 import Message, Request

    from aidsafe.models import _engine

    assert _engine._DIRECT is not None, "this DSPy no longer offers the direct provider path"
    request = Request(model="m", system="sys", messages=(Message.user("hi"),))
    bodies = []
    with MockOpenAIServer() as server:
        for direct in (True, False):
            if not direct:
                monkeypatch.setattr(_engine, "_DIRECT", None)
            engine = RemoteEngine(ModelSpec("m", "openai/mock-model", api_base=server.url))
            response = engine.complete(request)
            assert response.text
            assert len(engine.lm.history) == (0 if direct else 1)
            bodies.append(server.log[-1])
    assert bodies[0] == bodies[1]
