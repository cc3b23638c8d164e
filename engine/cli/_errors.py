"""The CLI's one error handler.

User errors are not bugs: a :class:`~aidsafe._util.errors.UserError` raised
by a command prints ``Error: ...`` on stderr and exits 1, without a
traceback; a :class:`~aidsafe._util.errors.UsageError` (misuse) exits 2 with
the usage line, like click's own usage errors. Anything else is a bug and keeps
its traceback. It lives in its own module so every command module can use it
without importing the group in :mod:`aidsafe.cli._main`.
"""

from __future__ import annotations

from functools import wraps

import click

from aidsafe._util.errors import UserError
from aidsafe._util.redact import redact


def user_errors(func):
    """Decorate a command: bad input prints ``Error: ...`` and exits 1, without a traceback."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            message = redact(str(exc))  # an error may quote what a provider echoed, key included
            if exc.exit_code == 2:
                raise click.UsageError(message) from None
            raise click.ClickException(message) from None

    return wrapper


__all__ = ["user_errors"]
