"""Sub-commands of ``aidsafe``, one module each, wired into :mod:`engine.cli`.

:func:`user_errors` lives here (not in ``engine.cli``) so command modules can
use it without importing the CLI group that imports them.
"""

from __future__ import annotations

from functools import wraps

import click

from aidsafe._util.errors import UserError


def user_errors(func):
    """Bad input prints ``Error: ...`` and exits 1, without a traceback."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper
