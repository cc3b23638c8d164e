"""`aidsafe export --format hf`: a folder that `datasets.load_dataset` and
`load_from_disk` both open, train/test splits by --test-size and seed, a
dataset card, and `--push-to-hub` against a local fake of the Hub's API
(127.0.0.1 only, never the network)."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from click.testing import CliRunner

import aidsafe
from aidsafe._util.errors import UserError
from aidsafe.cli._export import export_command
from aidsafe.testing import FakeHub
from aidsafe.tools._export import export

from ..conftest import options
from ..pipeline.test_preference import DPO, script
from .test_export import make_record

datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")
TOKEN = "hf_test_token_123"


def scored_record(rid, status="ok", **kw):
    record = make_record(rid, status, **kw)
    record["provenance"].update(recipe="aidsafe-dpo", recipe_hash="abc123", policy_set="aidsafe",
                                policy_hash="pol456", models={"default": {"backend": "remote", "model": "openai/gpt-4o-mini"},
                                        "judge": {"backend": "fake", "model": "judge"}},
                                engine="aidsafe 9.9")
    if status == "ok":
        record["scores"] = {"policy_faithfulness": 4 if int(rid[1:]) % 2 else 5}
        record["judge"] = {"policy_faithfulness": {"status": "ok"}}
    return record


@pytest.fixture
def records(tmp_path):
    """10 ok records with pairs, one filtered, one failed."""
    path = tmp_path / "records.jsonl"
    rows = [scored_record(f"r{i}") for i in range(1, 11)]
    rows += [scored_record("r11", "filtered", kept=False), scored_record("r12", "failed", pair=False)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def card_of(folder):
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


def ids(split):
    return [row["id"] for row in split]


def test_splits_by_test_size_and_seed_open_in_both_loaders(records, tmp_path):
    out = tmp_path / "ds"
    summary = export(records, out, "hf", layout="dpo", metadata=True, test_size=0.2, seed=7)
    assert summary.splits == {"train": 8, "test": 2} and summary.written == 10
    assert "splits: train 8, test 2" in "\n".join(summary.lines())
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    saved = datasets.load_from_disk(str(out))
    for name in ("train", "test"):
        assert ids(loaded[name]) == ids(saved[name])
        assert loaded[name].features == saved[name].features
    assert sorted(ids(loaded["train"]) + ids(loaded["test"]), key=lambda i: int(i[1:])) == \
        [f"r{i}" for i in range(1, 11)]
    # the same seed gives the same split; a count works as well as a fraction
    again = tmp_path / "again"
    export(records, again, "hf", layout="dpo", metadata=True, test_size=2, seed=7)
    assert ids(datasets.load_from_disk(str(again))["test"]) == ids(saved["test"])
    other = {tuple(ids(datasets.load_from_disk(str(again))["test"]))
             for seed in range(5) if export(records, again, "hf", layout="dpo", metadata=True, test_size=2,
                                            seed=seed)}
    assert len(other) > 1


@pytest.mark.parametrize("size, message", [
    (1.5, "give a fraction between 0 and 1"), (10, "leaves no training rows out of 10"), (-1, "give a fraction")])
def test_bad_test_size(records, tmp_path, size, message):
    with pytest.raises(UserError, match=message):
        export(records, tmp_path / "ds", "hf", test_size=size)


def test_card_lists_provenance_counts_scores_license_and_a_warning(records, tmp_path):
    out = tmp_path / "ds"
    export(records, out, "hf", layout="dpo", test_size=0.2, license="cc-by-4.0", name="AIDSAFE pairs")
    meta, body = card_of(out)
    assert meta["license"] == "cc-by-4.0" and meta["pretty_name"] == "AIDSAFE pairs"
    assert meta["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}]}]
    assert [(s["name"], s["num_examples"]) for s in meta["dataset_info"]["splits"]] == [("train", 8), ("test", 2)]
    block = meta["aidsafe"]
    assert block["recipes"] == [{"name": "aidsafe-dpo", "hash": "abc123", "records": 12}]
    assert block["policy_sets"] == [{"name": "aidsafe", "hash": "pol456"}]
    assert block["models"] == {"default": [{"backend": "remote", "model": "openai/gpt-4o-mini"}],
                               "judge": [{"backend": "fake", "model": "judge"}]}
    assert block["records"] == {"failed": 1, "filtered": 1, "ok": 10}
    assert block["margin_threshold"] == 1  # the recipe's threshold, not a measured margin
    assert block["means"]["pair_margin"]["mean"] == 3.0
    faithfulness = block["means"]["policy_faithfulness"]
    assert faithfulness["mean"] == 4.5 and faithfulness["n"] == 10
    assert faithfulness["ci95"][0] <= 4.5 <= faithfulness["ci95"][1]
    assert "**Content warning.**" in body and "harmful" in body
    assert "| recipe | `aidsafe-dpo` | `abc123` |" in body and "| policy set | `aidsafe` | `pol456` |" in body
    assert "| model | `default` | `openai/gpt-4o-mini` (backend: remote) |" in body
    assert "| policy_faithfulness | 4.50 [" in body
    assert "at least **1**" in body and "Source prompts: **cc-by-4.0**" in body


def test_card_without_license_or_scores(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(make_record("r1", pair=False)) + "\n", encoding="utf-8")
    export(path, tmp_path / "ds", "hf")
    meta, body = card_of(tmp_path / "ds")
    assert meta["license"] == "unknown" and "means" not in meta["aidsafe"]
    assert "## Judge scores" not in body and "--license ID" in body
    assert "loss on the completion only" in body


def test_dpo_run_to_hub_ready_folder(fake, recipe_file, prompts, tmp_path):
    script(fake)
    inputs = prompts(["How do I clean with bleach and ammonia?", "Is it safe to mix vinegar and baking soda?"])
    aidsafe.run(recipe_file(DPO), inputs, tmp_path / "out.jsonl", options(tmp_path / "c"))
    export(tmp_path / "out.jsonl", tmp_path / "ds", "hf", layout="dpo", metadata=True)
    meta, _ = card_of(tmp_path / "ds")
    assert meta["aidsafe"]["recipes"][0]["name"] == "mini-dpo" and meta["aidsafe"]["recipes"][0]["hash"]
    assert meta["aidsafe"]["models"] == {"default": [{"backend": "fake", "model": "fake"}]}
    row = datasets.load_dataset(str(tmp_path / "ds"), split="train", cache_dir=str(tmp_path / "hf"))[0]
    assert (row["score_chosen"], row["score_rejected"], row["margin"]) == (5, 2, 3)
    # the card names the input set (path and sha256) and warns in DPO terms
    meta, body = card_of(tmp_path / "ds")
    assert meta["aidsafe"]["inputs"][0]["name"] == str(inputs) and len(meta["aidsafe"]["inputs"][0]["hash"]) == 64
    assert f"| input prompts | `{inputs}` |" in body
    assert "rejected side of each preference pair" in body
    # an SFT card does not talk about rejected sides
    export(tmp_path / "out.jsonl", tmp_path / "sft", "hf", layout="sft")
    _, body = card_of(tmp_path / "sft")
    warning = body.split("**Content warning.**")[1].split("\n")[0]
    assert "rejected" not in warning and "completions" in warning and f"`{inputs}`" in body


# ------------------------------------------------------------------ the Hub

@pytest.fixture
def hub(monkeypatch):
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    with FakeHub(TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        # test_export turns offline mode on for datasets; these requests only reach 127.0.0.1
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        yield server


def test_push_to_hub_uploads_card_and_parquet_with_the_env_token(records, tmp_path, hub):
    out = tmp_path / "ds"
    result = CliRunner().invoke(export_command, [str(out), "-i", str(records), "--format", "hf", "--layout", "dpo",
                                                 "--test-size", "0.2", "--push-to-hub", "my-org/safe-pairs",
                                                 "--private"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"pushed to {hub.endpoint}/datasets/my-org/safe-pairs" in result.output
    repo = hub.repos["my-org/safe-pairs"]
    assert repo.private and repo.commits == ["aidsafe export: 10 dpo rows"]
    assert sorted(repo.files) == ["README.md", "data/test-00000-of-00001.parquet",
                                  "data/train-00000-of-00001.parquet"]
    assert all(auth == f"Bearer {TOKEN}" for method, _, auth in hub.requests if method == "POST")
    assert repo.files["README.md"] == (out / "README.md").read_bytes()
    assert "load_dataset('my-org/safe-pairs')" in repo.files["README.md"].decode()
    # what the Hub holds is the dataset: the pushed parquet shards read back as the local splits
    for split in ("train", "test"):
        table = pq.read_table(io.BytesIO(repo.files[f"data/{split}-00000-of-00001.parquet"]))
        assert table.num_rows == datasets.load_from_disk(str(out))[split].num_rows
    # the token is never written down
    assert not any(TOKEN.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())
    # pushing again to the existing repo adds a commit
    export(records, out, "hf", layout="dpo", push_to_hub="my-org/safe-pairs")
    assert len(repo.commits) == 2 and sorted(repo.files)[1:] == ["data/test-00000-of-00001.parquet",
                                                                 "data/train-00000-of-00001.parquet"]


def test_push_needs_a_token_and_fails_before_writing(records, tmp_path, hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    with pytest.raises(UserError, match="needs a Hugging Face write token: `hf auth login`, or export HF_TOKEN"):
        export(records, tmp_path / "ds", "hf", push_to_hub="my-org/x")
    assert not (tmp_path / "ds").exists() and hub.requests == []


def test_the_token_stored_by_hf_auth_login_is_used(records, tmp_path, hub, monkeypatch):
    # `hf auth login` writes the token to HF_TOKEN_PATH; huggingface_hub.get_token() reads it back
    stored = tmp_path / "hf-home" / "token"
    stored.parent.mkdir()
    stored.write_text(TOKEN)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(stored))
    export(records, tmp_path / "ds", "hf", push_to_hub="my-org/from-login")
    assert "my-org/from-login" in hub.repos
    assert all(auth == f"Bearer {TOKEN}" for method, _, auth in hub.requests if method == "POST")
    # HF_TOKEN, when set, comes first
    monkeypatch.setenv("HF_TOKEN", "hf_other")
    with pytest.raises(UserError, match="401"):
        export(records, tmp_path / "ds2", "hf", push_to_hub="my-org/from-env")


def test_a_refused_token_is_a_user_error(records, tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(UserError, match="401.*the token was refused: check HF_TOKEN"):
        export(records, tmp_path / "ds", "hf", push_to_hub="my-org/x")
    assert hub.repos == {}


@pytest.mark.parametrize("args, message", [
    (dict(fmt="sft", push_to_hub="my-org/x"), "--push-to-hub applies to --format hf"),
    (dict(fmt="hf", push_to_hub="not a repo"), "expected ORG/NAME"),
    (dict(fmt="hf", private=True), "--private applies with --push-to-hub"),
    (dict(fmt="parquet", test_size=0.1), "--test-size applies to --format hf"),
])
def test_push_and_split_misuse(records, tmp_path, hub, args, message):
    fmt = args.pop("fmt")
    with pytest.raises(UserError, match=message):
        export(records, tmp_path / "out", fmt, **args)
    assert hub.requests == []
