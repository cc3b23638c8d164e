"""The command group imports a command's module only when that command runs."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from aidsafe.cli._main import COMMANDS, LazyGroup, main

from ..conftest import ROOT

_PROBE = """
import json, sys
from click.testing import CliRunner
from aidsafe.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
assert result.exit_code == 0, result.output
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("aidsafe.cli._", "aidsafe.tools._")))))
"""


def loaded(*argv: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    return set(json.loads(out))


def test_validate_imports_only_its_own_command_module():
    modules = loaded("validate", "recipes/aidsafe.yaml")
    commands = {target.partition(":")[0] for target in COMMANDS.values()}
    assert modules & commands == {"aidsafe.cli._validate"}
    assert "aidsafe.tools._export" not in modules


def test_help_lists_every_command_with_its_summary():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output, name
    assert "Check RECIPES" in result.output


def test_export_help_reads_its_choices_without_the_exporter():
    modules = loaded("export", "--help")
    assert "aidsafe.cli._export" in modules and "aidsafe.tools._export" not in modules


def test_a_listing_that_names_the_wrong_command_is_refused():
    group = LazyGroup(name="g", lazy={"show": "aidsafe.cli._validate:validate_command"})
    with pytest.raises(RuntimeError, match="is the command 'validate', listed as 'show'"):
        group.get_command(click.Context(group), "show")


def test_an_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["valdate"])
    assert result.exit_code == 2 and "No such command 'valdate'" in result.output
