"""Fixtures shared by the CLI tests."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from aidsafe.cli._main import main


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke
