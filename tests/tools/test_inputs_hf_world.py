"""Inputs from the Hugging Face world: prompts given as chat messages (TRL's
conversational layout, aidsafe's own SFT export included) and `hf:NAME`
datasets that are not in the local cache (the cache first, offline; the Hub
only when it answers)."""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner

from aidsafe._util.errors import UserError
from aidsafe.cli._main import main
from aidsafe.runtime._records import read_inputs
from aidsafe.view._sample import write_sample_run

from ..conftest import MINI, read_jsonl


def test_aidsafe_runs_on_its_own_sft_export(fake, recipe_file, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    run = write_sample_run(tmp_path / "run.jsonl", 4)
    sft = tmp_path / "train-sft.jsonl"
    result = CliRunner().invoke(main, ["export", str(sft), "-i", str(run), "--format", "sft", "--system", "be safe"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in sft.read_text().splitlines()]
    assert isinstance(rows[0]["prompt"], list)  # TRL's conversational prompt
    out = tmp_path / "again.jsonl"
    result = CliRunner().invoke(main, ["run", str(recipe_file(MINI)), "-i", str(sft), "-o", str(out), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert [r["status"] for r in records] == ["ok"] * len(rows)
    assert [r["prompt"] for r in records] == [row["prompt"][-1]["content"] for row in rows]
    assert records[0]["meta"]["prompt_turns"] == [{"role": "system", "content": "be safe"}]
    # the input set is named in provenance (dataset cards show it)
    assert records[0]["provenance"]["input"]["name"] == str(sft)
    assert len(records[0]["provenance"]["input"]["sha256"]) == 64


def test_message_lists_take_the_last_user_message(tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [{"prompt": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                        {"role": "user", "content": "second"}]},
            {"prompt": [{"role": "system", "content": "only a system message"}]},
            {"prompt": [1, 2]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second, third = read_inputs(path)
    assert first.prompt == "second" and first.error is None
    assert first.meta["prompt_turns"] == rows[0]["prompt"][:2]
    assert "without a user message" in second.error and second.prompt is None
    assert "not of chat messages" in third.error


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket closes


def test_hf_name_missing_offline_fails_at_once(monkeypatch):
    pytest.importorskip("datasets")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"hf:someone/not-cached: not in the local Hugging Face cache and "
                                        r"HF_HUB_OFFLINE is set"):
        list(read_inputs("hf:someone/not-cached"))


def test_hf_name_missing_with_an_unreachable_hub_fails_without_retrying(monkeypatch, closed_port):
    datasets = pytest.importorskip("datasets")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    calls = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (calls.append(constants.HF_HUB_OFFLINE),
                                                                   real(*a, **k))[1])
    with pytest.raises(UserError, match=r"not in the local Hugging Face cache, and the Hub .* did not answer "
                                        r"within 5 s"):
        list(read_inputs("hf:someone/not-cached"))
    assert calls == [True]  # one offline look in the cache, no download with retries
