"""Issue 14 faults around a run: two runs on one output, an output that is the
input, a server that never answers, Ctrl-C, keys echoed in errors. Real
``aidsafe run`` subprocesses where the behaviour is about processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

import aidsafe
from aidsafe._util.errors import UsageError, UserError
from aidsafe._util.lock import exclusive_lock
from aidsafe.config._specs import ModelSpec
from aidsafe.models._engine import DEFAULT_TIMEOUT, RemoteEngine
from aidsafe.testing.mock_server import MockOpenAIServer, default_responder

from ..conftest import MINI, ROOT, options, read_jsonl

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def served(url: str, **extra) -> str:
    """MINI with its model on an OpenAI-compatible server at ``url``."""
    fields = "".join(f", {k}: {v}" for k, v in extra.items())
    return MINI.replace('model: "fake:test"', f'model: openai/mock-model, api_base: "{url}"{fields}')


def cli(*args: str, cache, **popen) -> subprocess.Popen:
    """``python -m aidsafe ARGS`` as a real process."""
    env = dict(ENV, AIDSAFE_CACHE_DIR=str(cache))
    return subprocess.Popen([sys.executable, "-m", "aidsafe", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def journal_lines(path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


# ------------------------------------------------------------ one output, one run

def test_lock_refuses_a_second_holder_and_names_its_pid(tmp_path):
    lock = tmp_path / "out.jsonl.lock"
    with exclusive_lock(lock):
        assert lock.read_text().strip() == str(os.getpid())
        holder = subprocess.run([sys.executable, "-c", f"""
from aidsafe._util.lock import LockHeld, exclusive_lock
try:
    with exclusive_lock({str(lock)!r}):
        print("got it")
except LockHeld as exc:
    print("held", exc.pid)
"""], env=ENV, capture_output=True, text=True, timeout=60)
        assert holder.stdout.strip() == f"held {os.getpid()}"
    assert not lock.exists()  # released and removed
    with exclusive_lock(lock):  # and free again
        pass


def test_second_run_on_the_same_output_refuses_and_the_first_completes(recipe_file, prompts, tmp_path):
    release = threading.Event()  # the first run waits on its second record until the second run is done

    def responder(messages, body):
        if "HOLD" in json.dumps(messages):
            release.wait(120)
        return default_responder(messages, body)

    rows = ["one", "HOLD two", "three", "four"]
    inputs, out = prompts(rows), tmp_path / "out.jsonl"
    try:
        with MockOpenAIServer(responder=responder) as server:
            recipe = recipe_file(served(server.url))
            first = cli("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", cache=tmp_path / "c1")
            wait_for(lambda: journal_lines(tmp_path / "out.jsonl.journal") >= 1, timeout=120)
            second = cli("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", cache=tmp_path / "c2")
            _, err = second.communicate(timeout=120)
            assert second.returncode == 1, err
            errors = [line for line in err.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1 and f"pid {first.pid}" in errors[0] and str(out) in errors[0], err
            assert "Traceback" not in err
            release.set()
            _, err1 = first.communicate(timeout=300)
            assert first.returncode == 0, err1
    finally:
        release.set()
    records = read_jsonl(out)
    assert [r["prompt"] for r in records] == rows and all(r["status"] == "ok" for r in records)
    assert not (tmp_path / "out.jsonl.lock").exists() and not (tmp_path / "out.jsonl.journal").exists()


def test_output_that_is_the_input_is_refused_and_the_input_kept(fake, recipe_file, prompts, tmp_path):
    inputs = prompts(["one", "two"])
    before = inputs.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(inputs)
    for output in (inputs, link, tmp_path / "sub" / ".." / "in.jsonl"):
        with pytest.raises(UsageError, match="same file as"):
            aidsafe.run(recipe_file(MINI), inputs, output, options(tmp_path / "c"))
    assert inputs.read_bytes() == before
    assert fake.calls == 0


def test_output_under_a_file_is_a_user_error(fake, recipe_file, prompts, tmp_path):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(UserError, match="afile is a file, not a folder"):
        aidsafe.run(recipe_file(MINI), prompts(["one"]), tmp_path / "afile" / "out.jsonl", options(tmp_path / "c"))


# ------------------------------------------------------------ timeouts and Ctrl-C

@contextmanager
def silent_server(accepted: list | None = None):
    """A TCP server that accepts connections and never answers (``accepted``
    collects them: each is one attempt of a call)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = accepted if accepted is not None else []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def test_remote_models_get_a_default_timeout():
    engine = RemoteEngine(ModelSpec(name="m", model="openai/x", api_base="http://127.0.0.1:9/v1"))
    assert engine.lm.kwargs["timeout"] == DEFAULT_TIMEOUT
    engine = RemoteEngine(ModelSpec(name="m", model="openai/x", api_base="http://127.0.0.1:9/v1", timeout=7))
    assert engine.lm.kwargs["timeout"] == 7


def test_a_server_that_never_answers_fails_the_record_after_the_timeout(recipe_file, prompts, tmp_path):
    accepted: list = []
    with silent_server(accepted) as url:
        recipe = recipe_file(served(url, timeout=1, num_retries=1))
        summary = aidsafe.run(recipe, prompts(["hello"]), tmp_path / "out.jsonl",
                              aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False))
        attempts = len(accepted)
    record = read_jsonl(tmp_path / "out.jsonl")[0]
    assert record["status"] == "failed" and "timeout" in json.dumps(record["error"]).lower()
    assert summary.statuses == {"failed": 1}
    assert attempts == 2  # num_retries: 1 bounds the work: two attempts, then the record fails


def test_ctrl_c_stops_a_run_at_once_keeping_what_finished(recipe_file, prompts, tmp_path):
    """SIGINT while calls hang on a server that never answers them: the run
    ends within seconds (it does not wait for those calls), the finished
    records are in the output, and a rerun resumes."""
    release = threading.Event()
    hang = threading.Event()
    hang.set()

    def responder(messages, body):
        if hang.is_set() and "HANG" in json.dumps(messages):
            release.wait(120)
        return default_responder(messages, body)

    rows = ["one", "HANG two", "three", "four", "HANG five"]
    inputs, out = prompts(rows), tmp_path / "out.jsonl"
    journal = tmp_path / "out.jsonl.journal"
    try:
        with MockOpenAIServer(responder=responder) as server:
            recipe = recipe_file(served(server.url))
            run = cli("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", "--workers", "2",
                      cache=tmp_path / "c")
            wait_for(lambda: journal_lines(journal) >= 3, timeout=120)
            time.sleep(0.5)  # the run is now blocked on the hanging calls
            finished = journal_lines(journal)
            run.send_signal(signal.SIGINT)
            try:
                # a hang guard, not a measurement: the hanging calls wait 120 s for `release`
                _, err = run.communicate(timeout=60)
            finally:
                if run.poll() is None:
                    run.kill()
            assert run.returncode == 130, err
            assert not release.is_set()  # it stopped without waiting for the calls in flight
            kept = read_jsonl(out)
            assert len(kept) == finished and all(r["status"] == "ok" and "HANG" not in r["prompt"] for r in kept)
            assert journal.exists() and "rerun the same command to resume" in err
            hang.clear()
            release.set()
            again = cli("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", cache=tmp_path / "c")
            _, err = again.communicate(timeout=300)
            assert again.returncode == 0, err
            assert f"({finished} already done)" in err
    finally:
        release.set()
    records = read_jsonl(out)
    assert [r["prompt"] for r in records] == rows and all(r["status"] == "ok" for r in records)


# ------------------------------------------------------------ secrets

KEY = "Xq7-provider-credential-0123456789"  # no key shape: only the api_key_env lookup can catch it
SHAPED = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123"  # not in the environment: the shape must catch it


def test_a_key_echoed_by_the_provider_reaches_no_record_log_error_or_cache(recipe_file, prompts, tmp_path):
    recipe = recipe_file(MINI.replace('model: "fake:test"', 'model: "fake:echo", api_key_env: PROVIDER_CRED'))
    inputs, out, cache = prompts(["one", "two"]), tmp_path / "out.jsonl", tmp_path / "c"
    script = f"""
import logging, os, sys
import aidsafe
from aidsafe.cli import main

class Echo:
    def identity(self):
        return {{"backend": "echo"}}
    def complete(self, request):
        key = os.environ["PROVIDER_CRED"]
        logging.getLogger("provider").warning("401 for key %s (also {SHAPED})", key)
        raise RuntimeError(f"Incorrect API key provided: {{key}}. Authorization: Bearer {{key}}; {SHAPED}")

aidsafe.register_engine("echo", lambda spec: Echo())
sys.argv = ["aidsafe", "run", {str(recipe)!r}, "-i", {str(inputs)!r}, "-o", {str(out)!r}, "-q",
            "--cache-dir", {str(cache)!r}]
main()
"""
    done = subprocess.run([sys.executable, "-c", script], env=dict(ENV, PROVIDER_CRED=KEY), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # every record failed
    records = read_jsonl(out)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert "Incorrect API key provided: [redacted]" in records[0]["error"]["message"]
    assert records[0]["error"]["traceback"] and "[redacted]" in records[0]["error"]["traceback"]
    leaks = [str(path) for path in tmp_path.rglob("*") if path.is_file() and path.name != "recipe.yaml"
             and (KEY.encode() in path.read_bytes() or SHAPED.encode() in path.read_bytes())]
    assert not leaks
    for text in (done.stdout, done.stderr):
        assert KEY not in text and SHAPED not in text
    assert "401 for key [redacted]" in done.stderr  # the log line is there, without the key


def test_a_file_system_without_locks_runs_unlocked_with_a_warning(tmp_path, monkeypatch, caplog):
    import errno

    from aidsafe._util import lock as lock_module

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_locks)
    with exclusive_lock(tmp_path / "out.jsonl.lock"):
        pass
    assert "cannot lock files" in caplog.text
    assert not (tmp_path / "out.jsonl.lock").exists()


@pytest.mark.parametrize("executor", ["thread", "ray"])
def test_a_held_output_is_refused_before_any_work_with_either_executor(fake, recipe_file, prompts, tmp_path,
                                                                        executor):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "r1"}\n', encoding="utf-8")
    with exclusive_lock(tmp_path / "out.jsonl.lock"):
        with pytest.raises(UserError, match=f"being written by another run \\(pid {os.getpid()}"):
            aidsafe.run(recipe_file(MINI), prompts(["one"]), out, options(tmp_path / "c", executor=executor))
    assert out.read_text(encoding="utf-8") == '{"id": "r1"}\n'  # untouched
    assert fake.calls == 0 and not (tmp_path / "out.jsonl.journal").exists()
