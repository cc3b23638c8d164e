"""``aidsafe init``: the starter and variant recipes it writes validate, it
never overwrites, and bad names or parents are errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import aidsafe
from aidsafe.cli._main import main
from aidsafe.evaluation._judge_specs import is_judges_file

from ..conftest import ROOT

SHIPPED = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml") if not is_judges_file(p))


@pytest.fixture
def init(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def invoke(*args):
        return CliRunner().invoke(main, ["init", *args], catch_exceptions=False)

    return invoke


def test_the_starter_recipe_validates_and_points_editors_at_the_schema(init, tmp_path):
    result = init("my-recipe")
    assert result.exit_code == 0, result.output
    assert result.output == "wrote my-recipe.yaml; check it with: aidsafe validate my-recipe.yaml\n"
    path = tmp_path / "my-recipe.yaml"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (tmp_path / first.split("=", 1)[1]).resolve() == (ROOT / "schemas" / "recipe.schema.json").resolve()
    recipe = aidsafe.load_recipe(path)
    assert recipe.name == "my-recipe" and [s.kind for s in recipe.stages] == [
        "decompose", "generate", "deliberate", "refine"]


@pytest.mark.parametrize("parent", SHIPPED)
def test_a_variant_of_each_shipped_recipe_validates_with_its_examples_uncommented(init, tmp_path, parent):
    result = init("variant", "--from", parent)
    assert result.exit_code == 0, result.output
    path = tmp_path / "variant.yaml"
    text = path.read_text(encoding="utf-8")
    assert f"extends: {parent}.yaml" in text
    recipe = aidsafe.load_recipe(path)
    assert recipe.name == "variant" and recipe.chain[1].endswith(f"{parent}.yaml")
    # the stage example is real: uncommented, it still validates
    lines = text.splitlines()
    start = lines.index("# stages:")
    path.write_text("\n".join(lines[:start] + [lines[start][2:], lines[start + 1][2:]]) + "\n", encoding="utf-8")
    aidsafe.load_recipe(path)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["taken"], 1, "Error: taken.yaml already exists; choose another name, or move that file away first "
                   "(aidsafe init never overwrites)"),
    (["x", "--from", "aidsafee"], 2, "Error: --from 'aidsafee': not a shipped recipe; did you mean 'aidsafe'?"),
    (["x", "--from", "judges"], 2, "Error: --from 'judges': not a shipped recipe"),
    (["bad name"], 2, "Error: recipe name 'bad name' may use letters, digits, '_', '-' and '.' only (it becomes "
                      "the recipe's `name:`); e.g. aidsafe init bad-name"),
    ([], 2, "Missing argument 'NAME'"),
    (["x" * 300], 1, "Error: cannot write " + "x" * 300 + ".yaml: File name too long; give a shorter name in a "
                     "folder that exists and that you can write to"),
    (["no/such/x"], 1, "Error: cannot write no/such/x.yaml: No such file or directory; give a shorter name in "
                       "a folder that exists and that you can write to"),
])
def test_init_errors(init, tmp_path, args, code, message):
    (tmp_path / "taken.yaml").write_text("mine\n", encoding="utf-8")
    result = init(*args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert (tmp_path / "taken.yaml").read_text(encoding="utf-8") == "mine\n"
    assert not (tmp_path / "x.yaml").exists()
