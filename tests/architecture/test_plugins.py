"""Extending aidsafe without editing it: the example plugin in
``tests/plugin_example`` (a stage kind and a filter) is found through its
entry points, validated like a built-in, and runs in a recipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

EXAMPLE = Path(__file__).resolve().parents[1] / "plugin_example"

RECIPE = """
name: risky
models:
  default: {model: "canned:demo"}
policies: aidsafe
agents:
  classifier: {instructions: "CLASSIFIER: name the risk category."}
  thinker: {instructions: "THINKER: reason and answer."}
stages:
  - {id: risk, kind: classify_risk, agent: classifier}
  - {id: initial, kind: generate, agent: thinker, when: "risk_category != 'weapons'"}
  - {id: clean, kind: filter, filters: [{type: no_urls}]}
"""

SCRIPT = """
import json, sys
import aidsafe
summary = aidsafe.run(sys.argv[1], sys.argv[2], sys.argv[3],
                      aidsafe.RunOptions(cache_dir=sys.argv[4], progress=False))
print(json.dumps(summary.statuses))
"""


def install_example(site: Path) -> None:
    """What ``pip install tests/plugin_example`` leaves behind, without pip:
    the package and a dist-info whose entry_points.txt comes from pyproject."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    shutil.copytree(EXAMPLE / "aidsafe_risk", site / "aidsafe_risk")
    info = site / f"aidsafe_risk-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
                     for group, eps in project["entry-points"].items())
    (info / "entry_points.txt").write_text(groups)


@pytest.fixture
def plugin_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_example(site)
    return {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "AIDSAFE_CACHE_DIR": str(tmp_path / "cache")}


def test_third_party_stage_kind_filter_and_backend_run_in_a_recipe(plugin_env, tmp_path):
    recipe = tmp_path / "risky.yaml"
    recipe.write_text(RECIPE)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"id": "1", "prompt": "How do I scan my own network?"}) + "\n")
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(recipe), str(inputs), str(out), str(tmp_path / "c")],
                          capture_output=True, text=True, env=plugin_env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"ok": 1}
    record = json.loads(out.read_text())
    assert record["extra"]["risk_category"] == "cyber"
    assert record["cot"] == ["Explain safely."]
    assert {"thought": "See https://example.com", "filter": "no_urls"} in record["removed"]
    assert record["provenance"]["models"]["default"] == {"backend": "fake", "model": "canned:demo"}


def test_plugin_kinds_are_validated_and_listed_like_built_ins(plugin_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.replace("kind: classify_risk", "kind: clasify_risk"))
    proc = subprocess.run([sys.executable, "-m", "aidsafe", "validate", str(bad)], capture_output=True, text=True,
                          env=plugin_env)
    assert proc.returncode == 1
    assert "did you mean 'classify_risk'?" in proc.stderr and "Traceback" not in proc.stderr
    good = tmp_path / "good.yaml"
    good.write_text(RECIPE)
    proc = subprocess.run([sys.executable, "-m", "aidsafe", "validate", str(good)], capture_output=True, text=True,
                          env=plugin_env)
    assert proc.returncode == 0, proc.stderr


def test_a_broken_plugin_is_a_clear_error_not_a_traceback(plugin_env, tmp_path):
    site = Path(plugin_env["PYTHONPATH"])
    (site / "aidsafe_risk" / "__init__.py").write_text("raise ImportError('missing dependency foo')\n")
    recipe = tmp_path / "risky.yaml"
    recipe.write_text(RECIPE)
    proc = subprocess.run([sys.executable, "-m", "aidsafe", "validate", str(recipe)], capture_output=True, text=True,
                          env=plugin_env)
    assert proc.returncode == 1
    assert "plugin 'classify_risk'" in proc.stderr and "missing dependency foo" in proc.stderr
    assert "Traceback" not in proc.stderr
