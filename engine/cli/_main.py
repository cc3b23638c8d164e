"""The ``aidsafe`` click group and its commands, one module each.

Only the group and the registration live here. Command modules import just
click at load time (their work is imported inside each command), so
``aidsafe --help`` and ``aidsafe validate`` never import DSPy.
"""

from __future__ import annotations

import click

from aidsafe import __version__
from aidsafe.cli._bench import bench_command
from aidsafe.cli._cache import cache_group
from aidsafe.cli._compare import compare_command
from aidsafe.cli._diff import diff_command
from aidsafe.cli._eval import eval_command
from aidsafe.cli._export import export_command
from aidsafe.cli._init import init_command
from aidsafe.cli._optimize import optimize_command
from aidsafe.cli._run import run_command
from aidsafe.cli._serve import serve_command
from aidsafe.cli._show import show_command
from aidsafe.cli._validate import validate_command
from aidsafe.cli._view import view_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aidsafe")
def main():
    """aidsafe: generate policy-embedded chain-of-thought safety data by
    multi-agent deliberation, from YAML recipes."""
    from aidsafe._util.redact import install_log_redaction

    install_log_redaction()  # no API key in a log line or a traceback of this process


# In the order of the original CLI, which `aidsafe --help` lists alphabetically anyway.
COMMANDS = (validate_command, show_command, run_command, cache_group, serve_command, diff_command, eval_command,
            bench_command, export_command, optimize_command, compare_command, view_command, init_command)

for _command in COMMANDS:
    main.add_command(_command)

__all__ = ["COMMANDS", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
