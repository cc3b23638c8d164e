"""Issue 29, item 7: redaction covers every secret. A password in an
`api_base` never reaches provenance, errors or the output; a key a server
echoes inside a 200 answer is in neither the cache nor the output; `eval`
and `bench` take `--judge-api-key-env` like the other judging commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import aidsafe
from aidsafe._util.redact import REDACTED, redact, strip_userinfo
from aidsafe.cli._main import main
from aidsafe.testing.mock_server import MockOpenAIServer, default_responder

from ..conftest import MINI, read_jsonl

KEY = "sk-echoed-0123456789abcdef"
PASSWORD = "hunter2-pass-word"


def served(url: str, extra: str = "") -> str:
    return MINI.replace('model: "fake:test"', f'model: openai/mock-model, api_base: "{url}"{extra}')


def every_byte_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("text, expected", [
    (f"POST http://alice:{PASSWORD}@10.0.0.5:8000/v1 failed", f"POST http://{REDACTED}@10.0.0.5:8000/v1 failed"),
    ("https://token@host/v1", f"https://{REDACTED}@host/v1"),
    ("mail me: someone@example.com", "mail me: someone@example.com"),
])
def test_userinfo_in_any_url_is_redacted(text, expected):
    assert redact(text) == expected


def test_strip_userinfo_drops_it_and_remembers_the_password():
    assert strip_userinfo(f"http://alice:{PASSWORD}@host:1/v1") == "http://host:1/v1"
    assert redact(f"the server said {PASSWORD}") == f"the server said {REDACTED}"


def test_a_password_in_api_base_is_in_no_record_or_provenance(recipe_file, prompts, tmp_path):
    with MockOpenAIServer() as server:
        plain = server.url
        url = plain.replace("http://", f"http://alice:{PASSWORD}@")
        recipe = recipe_file(served(url, ", num_retries: 0"))
        aidsafe.run(recipe, prompts(["one"]), tmp_path / "out.jsonl",
                    aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False))
    record = read_jsonl(tmp_path / "out.jsonl")[0]
    # (DSPy's HTTP client takes no user:password@ in a URL: the call fails, and its error names the endpoint)
    assert record["status"] == "failed" and REDACTED in record["error"]["message"]
    assert record["provenance"]["models"]["default"]["api_base"] == plain
    assert PASSWORD not in (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert PASSWORD.encode() not in every_byte_under(tmp_path / "c")


def test_a_key_echoed_in_a_200_answer_is_in_neither_cache_nor_output(recipe_file, prompts, tmp_path, monkeypatch):
    monkeypatch.setenv("ECHO_TEST_KEY", KEY)

    def echo(messages, body):
        text = default_responder(messages, body)
        data = json.loads(text)
        for key, value in data.items():  # into the first text the answer holds
            if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], str)):
                if isinstance(value, str):
                    data[key] = value + f" (your key is {KEY})"
                else:
                    value[0] += f" (your key is {KEY})"
                return json.dumps(data)
        return text

    with MockOpenAIServer(responder=echo) as server:
        recipe = recipe_file(served(server.url, ", api_key_env: ECHO_TEST_KEY"))
        summary = aidsafe.run(recipe, prompts(["one"]), tmp_path / "out.jsonl",
                              aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False))
        assert summary.statuses == {"ok": 1}, read_jsonl(tmp_path / "out.jsonl")[0]["error"]
        assert server.calls > 0
    output = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert KEY not in output and REDACTED in output
    assert KEY.encode() not in every_byte_under(tmp_path / "c")


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_eval_and_bench_take_judge_api_key_env(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert "--judge-api-key-env VAR" in result.output


def test_eval_reads_the_judges_key_from_the_named_variable(tmp_path, monkeypatch):
    run = tmp_path / "run.jsonl"
    run.write_text(json.dumps({"id": "a", "status": "ok", "prompt": "p", "response": "r", "cot": []}) + "\n")
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    result = CliRunner().invoke(main, ["eval", str(run), "--judge-model", "openai/x", "--judge-api-base",
                                       "http://127.0.0.1:9/v1", "--judge-api-key-env", "NO_SUCH_JUDGE_KEY"])
    assert result.exit_code == 1 and "NO_SUCH_JUDGE_KEY" in result.output and "not set" in result.output
