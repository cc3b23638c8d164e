"""Error types. A :class:`UserError` is bad input (a recipe, a policy file, an
input record, a model answer): the CLI prints it as ``Error: ...`` and exits 1,
without a traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user. The message says what was expected, what was
    found and how to fix it."""

    exit_code = 1


class UsageError(UserError):
    """The command was called wrongly (options that contradict each other,
    ``-o`` naming the input): the CLI prints usage and exits 2, click's
    convention for misuse."""

    exit_code = 2


class RecipeError(UserError):
    """One or more problems in a recipe or policy file.

    ``problems`` holds one line per problem, each already prefixed with
    ``file:line json.path:``.
    """

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"{source}: {len(self.problems)} problem(s)" if source else f"{len(self.problems)} problem(s)"
        super().__init__(head + "\n" + "\n".join(f"  {p}" for p in self.problems))


class ModelError(UserError):
    """A model cannot be loaded or configured (missing weights, bad hash,
    unknown backend, missing API key variable)."""


class OutputParseError(Exception):
    """A model answer could not be parsed into the declared output fields
    after the allowed retries. Keeps the raw answer so it is never lost."""

    def __init__(self, message: str, raw: str | None = None):
        super().__init__(message)
        self.raw = raw
