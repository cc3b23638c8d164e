"""Issue 29, item 5: a whole-call deadline. The HTTP client's timeout only
bounds the wait for each next byte, so a server trickling bytes held a
`timeout: 3, num_retries: 0` call past 90 s. Each attempt is now bounded
as a whole by `timeout`, the error names the recipe key to raise, and a
server's Retry-After is capped (RETRY_AFTER_CAP)."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager

import pytest

from aidsafe.config._specs import ModelSpec
from aidsafe.models._engine import RETRY_AFTER_CAP, CallTimeout, RemoteEngine


@contextmanager
def trickle_server(total: int = 400, every: float = 0.05):
    """Answers 200 with a long Content-Length, then one body byte per
    ``every`` seconds (``total`` bytes, then it hangs up). ``sent`` counts the
    bytes so far: the bound is asserted on the work, not the clock."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    state = {"sent": 0}
    stop = threading.Event()

    def serve(conn):
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            for _ in range(total):
                if stop.wait(every):
                    return
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                state["sent"] += 1

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", state
    finally:
        stop.set()
        listener.close()


def test_a_trickling_server_cannot_hold_a_call_past_its_timeout():
    from dspy.lm15 import Message, Request

    with trickle_server() as (url, state):
        engine = RemoteEngine(ModelSpec("judge", "openai/m", api_base=url, timeout=1, num_retries=0))
        with pytest.raises(CallTimeout) as info:
            engine.complete(Request(model="m", messages=(Message.user("hi"),)))
        sent = state["sent"]
    # at 20 bytes a second, a 1 s deadline stops the call near 20 bytes; without it, it read all 400
    assert sent < 200, f"the call read {sent} trickled bytes before giving up"
    message = str(info.value)
    assert "within its timeout of 1s" in message and "models.judge.timeout" in message
    assert "Timeouts(read" not in message


def test_retries_each_get_the_whole_call_bound():
    from dspy.lm15 import Message, Request

    with trickle_server() as (url, state):
        engine = RemoteEngine(ModelSpec("m", "openai/m", api_base=url, timeout=0.5, num_retries=2))
        engine.sleep = lambda seconds: None
        with pytest.raises(CallTimeout, match=r"attempt 3 of 3"):
            engine.complete(Request(model="m", messages=(Message.user("hi"),)))


def test_an_idle_timeout_names_the_recipe_key_too():
    from dspy.lm15 import Message, Request

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts (the kernel does) and never answers
    try:
        engine = RemoteEngine(ModelSpec("m", "openai/m", api_base=f"http://127.0.0.1:{listener.getsockname()[1]}/v1",
                                        timeout=0.5, num_retries=0))
        with pytest.raises(CallTimeout, match=r"raise `timeout:` of that model \(models\.m\.timeout"):
            engine.complete(Request(model="m", messages=(Message.user("hi"),)))
    finally:
        listener.close()


def test_retry_after_is_capped():
    engine = RemoteEngine(ModelSpec("m", "openai/m", api_base="http://127.0.0.1:9/v1"))
    assert RETRY_AFTER_CAP == 60
    assert engine.backoff(0, retry_after=10_000) <= RETRY_AFTER_CAP + 0.1
    assert 5 <= engine.backoff(0, retry_after=5) <= 5.1


def test_the_deadline_keeps_the_callers_context():
    """The attempt runs in a helper thread: DSPy's context (and the run's
    usage meter) must still be the caller's."""
    import dspy

    seen = []
    engine = RemoteEngine(ModelSpec("m", "openai/m", api_base="http://127.0.0.1:9/v1", timeout=5))
    engine._send = lambda request: seen.append(dspy.settings.trace) or "answer"
    with dspy.context(trace=["marker"]):
        assert engine._send_within(object(), 0) == "answer"
    assert seen == [["marker"]]
