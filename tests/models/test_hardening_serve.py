"""Issue #14 item 14: `aidsafe serve` refuses an oversized body before reading
it, bounds its queue, and reports a port in use before "serving"."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from aidsafe._util.errors import ModelError
from aidsafe.cli._main import main
from aidsafe.models.local import _serve
from aidsafe.models.local._serve import ServeFront
from aidsafe.testing.mock_server import MockOpenAIServer

CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


def post(port, body=CHAT, headers=None, timeout=10):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/v1/chat/completions", body=body,
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def upstream():
    with MockOpenAIServer() as server:
        yield server


@pytest.fixture
def front_for():
    fronts = []

    def make(server, **kw):
        kw.setdefault("slots", 2)
        fronts.append(ServeFront("127.0.0.1", 0, **kw).start(f"http://127.0.0.1:{server.port}", "internal"))
        return fronts[-1]

    yield make
    for front in fronts:
        front.close()


def port_of(front):
    return int(front.url.rsplit(":", 1)[1].split("/")[0])


def test_requests_reach_the_model_through_the_front(upstream, front_for):
    front = front_for(upstream)
    status, _, data = post(port_of(front))
    assert status == 200
    assert json.loads(data)["choices"][0]["message"]["content"].startswith("Mock reply")
    assert upstream.calls == 1


def test_an_oversized_body_is_refused_from_its_content_length_alone(upstream, front_for):
    front = front_for(upstream, max_body_bytes=1024)
    # Only the headers are sent: a 50 MB body the server would have to read first.
    with socket.create_connection(("127.0.0.1", port_of(front)), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\n\r\n")
        chunks = []
        while chunk := sock.recv(4096):  # the server closes after its answer
            chunks.append(chunk)
        answer = b"".join(chunks).decode()
    assert answer.startswith("HTTP/1.1 413")
    assert "over the limit of 1024 bytes" in answer
    assert upstream.requests == 0  # never forwarded, never tokenized


def test_a_full_queue_answers_503_with_retry_after(front_for):
    with MockOpenAIServer(latency=1.0) as slow:
        front = front_for(slow, slots=1, max_waiting=1)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: post(port_of(front)), range(4)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 503, 503]
    busy = [headers for status, headers, _ in results if status == 503]
    assert all(headers.get("Retry-After") == "1" for headers in busy)
    assert slow.calls == 2


def test_a_key_is_required_when_set(upstream, front_for):
    front = front_for(upstream, api_key="s3cret")
    assert post(port_of(front))[0] == 401
    assert post(port_of(front), headers={"Authorization": "Bearer s3cret"})[0] == 200


@pytest.fixture
def busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_a_port_in_use_fails_before_the_model_loads(busy_port, monkeypatch, tmp_path):
    loaded = []
    monkeypatch.setattr(_serve, "resolve_local", lambda *a: loaded.append(a))
    with pytest.raises(ModelError, match=f"port {busy_port} on 127.0.0.1 is already in use"):
        _serve.serve("smoke", tmp_path, port=busy_port)
    assert loaded == []


def test_cli_port_in_use_is_one_error_line_and_never_says_serving(busy_port, monkeypatch):
    monkeypatch.setattr(_serve, "resolve_local", lambda *a: pytest.fail("the model must not load"))
    result = CliRunner().invoke(main, ["serve", "--port", str(busy_port)])
    assert result.exit_code == 1
    assert "serving" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: port ")


def test_serve_wires_the_front_to_the_native_server(upstream, monkeypatch, tmp_path, capsys):
    """serve() with llama.cpp stood in by the mock server: the native
    listener gets an ephemeral port and a random key, clients the front."""
    model = SimpleNamespace(name="tiny", sha256="0" * 64, path=tmp_path / "m.gguf")
    seen = {}
    monkeypatch.setattr(_serve, "resolve_local", lambda ref, cache_dir: model)
    monkeypatch.setattr(_serve, "_make_params", lambda model, **kw: seen.update(kw) or kw)
    monkeypatch.setattr(_serve, "_start_server",
                        lambda params, model: SimpleNamespace(listening_address=f"http://127.0.0.1:{upstream.port}"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=_serve.serve, args=("tiny", tmp_path),
                              kwargs={"port": port, "ready": ready, "stop": stop, "max_body_bytes": 10})
    thread.start()
    try:
        assert ready.wait(10)
        assert (seen["port"], seen["host"]) == (0, "127.0.0.1") and len(seen["api_key"]) > 20
        assert post(port, body=b"{}")[0] == 400  # forwarded: the mock wants messages
        assert upstream.requests == 1
        assert post(port)[0] == 413
        assert upstream.requests == 1
    finally:
        stop.set()
        thread.join(10)
    assert f"at http://127.0.0.1:{port}/v1" in capsys.readouterr().out


def _request(port, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_an_unknown_model_is_404_naming_the_loaded_one_like_vllm(upstream):
    front = ServeFront("127.0.0.1", 0, slots=2).start(f"http://127.0.0.1:{upstream.port}", "k",
                                                       model_name="qwen2.5-coder-0.5b-instruct-q4_k_m",
                                                       aliases=("default",))
    try:
        port = port_of(front)

        def chat(model):
            return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()

        status, body = _request(port, "POST", "/v1/chat/completions", chat("gpt-4o"))
        assert status == 404 and body["error"]["type"] == "NotFoundError"
        assert "`gpt-4o` does not exist" in body["error"]["message"]
        assert "serves `qwen2.5-coder-0.5b-instruct-q4_k_m`" in body["error"]["message"]
        assert upstream.requests == 0  # never reached the model
        for served in ("qwen2.5-coder-0.5b-instruct-q4_k_m", "openai/qwen2.5-coder-0.5b-instruct-q4_k_m", "default"):
            assert _request(port, "POST", "/v1/chat/completions", chat(served))[0] == 200
        status, models = _request(port, "GET", "/v1/models")
        assert status == 200 and [m["id"] for m in models["data"]] == ["qwen2.5-coder-0.5b-instruct-q4_k_m"]
        # embeddings: a hint that names options that exist
        status, body = _request(port, "POST", "/v1/embeddings", json.dumps({"input": ["x"]}).encode())
        assert status == 501 and "--embeddings" not in body["error"]["message"]
        assert "models: {embed: {model: local:default}}" in body["error"]["message"]
        assert "embedder: lexical" in body["error"]["message"]
        result = CliRunner().invoke(main, ["serve", "--help"])
        assert "--embeddings" not in result.output
    finally:
        front.close()


def test_the_openai_client_gets_a_not_found_error(upstream):
    openai = pytest.importorskip("openai")
    front = ServeFront("127.0.0.1", 0, slots=2).start(f"http://127.0.0.1:{upstream.port}", "k", model_name="tiny")
    try:
        client = openai.OpenAI(base_url=front.url, api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content.startswith("Mock reply")
    finally:
        front.close()
