"""Docs that cannot drift: every stage kind, filter, recipe key and command is documented."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

from aidsafe.cli._main import main
from aidsafe.pipeline.stages import FILTERS, STAGES

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _properties(schema, out=None):
    out = set() if out is None else out
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            out.add(name)
            _properties(sub, out)
        for value in schema.values():
            if isinstance(value, (dict, list)):
                _properties(value, out)
    elif isinstance(schema, list):
        for item in schema:
            _properties(item, out)
    return out


def test_every_stage_kind_and_filter_is_in_the_readme():
    for kind in STAGES.names():
        assert f"`{kind}`" in README, kind
    for name in FILTERS.names():
        assert f"`{name}`" in README, name


def test_every_recipe_schema_property_is_in_the_readme():
    schema = json.loads((ROOT / "schemas" / "recipe.schema.json").read_text())
    missing = sorted(p for p in _properties(schema) if p not in README)
    assert not missing, f"README does not mention: {missing}"


def test_every_schema_property_has_a_description():
    schema = json.loads((ROOT / "schemas" / "recipe.schema.json").read_text())

    def walk(node, path):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert "description" in sub or "$ref" in sub or "oneOf" in sub or name in ("rule", "k", "before", "after"), \
                    f"{path}.{name} has no description"
                walk(sub, f"{path}.{name}")
            for key in ("$defs", "additionalProperties", "items"):
                if isinstance(node.get(key), dict):
                    for sub_name, sub in (node[key].items() if key == "$defs" else [(key, node[key])]):
                        walk(sub, f"{path}.{sub_name}")

    walk(schema, "recipe")


def test_every_command_is_in_the_cli_reference():
    def commands(group, prefix=""):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):  # the lazy group imports each command here
            command = group.get_command(ctx, name)
            assert command is not None, name
            yield prefix + name
            if isinstance(command, click.Group):
                yield from commands(command, prefix + name + " ")

    names = list(commands(main))
    assert "validate" in names and "cache stats" in names
    for name in names:
        assert f"aidsafe {name.split()[0]}" in README, name
    help_text = CliRunner().invoke(main, ["run", "--help"]).output
    for option in ("--plan", "--model", "--workers", "--max-failures", "--no-cache", "--cache-dir", "--keep-failed",
                   "--force-restart"):
        assert option in help_text and option in README, option
