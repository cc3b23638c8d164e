"""The ``aidsafe`` click group: each command's module is imported only when
that command runs (or ``--help`` lists the commands), so a command pays for
its own imports and no other's.

Command modules import just click at load time and their work inside the
command, so ``aidsafe --help`` and ``aidsafe validate`` never import DSPy.
"""

from __future__ import annotations

import importlib

import click

from aidsafe import __version__

# name -> "module:attribute" of its click command (``aidsafe --help`` lists them alphabetically).
COMMANDS = {
    "validate": "aidsafe.cli._validate:validate_command",
    "show": "aidsafe.cli._show:show_command",
    "run": "aidsafe.cli._run:run_command",
    "cache": "aidsafe.cli._cache:cache_group",
    "serve": "aidsafe.cli._serve:serve_command",
    "diff": "aidsafe.cli._diff:diff_command",
    "eval": "aidsafe.cli._eval:eval_command",
    "bench": "aidsafe.cli._bench:bench_command",
    "export": "aidsafe.cli._export:export_command",
    "optimize": "aidsafe.cli._optimize:optimize_command",
    "compare": "aidsafe.cli._compare:compare_command",
    "view": "aidsafe.cli._view:view_command",
    "init": "aidsafe.cli._init:init_command",
}


class LazyGroup(click.Group):
    """A click group whose commands are named up front and imported from
    ``lazy`` (name -> ``"module:attribute"``) on first use."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            module, _, attribute = self.lazy[name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if command.name != name:
                raise RuntimeError(f"{self.lazy[name]} is the command {command.name!r}, listed as {name!r}")
            self.add_command(command)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aidsafe")
def main():
    """aidsafe: generate policy-embedded chain-of-thought safety data by
    multi-agent deliberation, from YAML recipes."""
    from aidsafe._util.redact import install_log_redaction

    install_log_redaction()  # no API key in a log line or a traceback of this process


__all__ = ["COMMANDS", "LazyGroup", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
