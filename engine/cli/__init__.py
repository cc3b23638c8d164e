"""The ``aidsafe`` command line: one module per command, one error handler."""

from aidsafe.cli._main import main

__all__ = ["main"]
