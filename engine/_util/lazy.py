"""Lazy public names for package ``__init__`` modules (PEP 562).

A package lists its public names and the private module defining each; a name
is imported on first access. So ``import aidsafe`` or ``aidsafe validate``
never pays for DSPy, and a subpackage's ``__init__`` never drags in siblings.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package``.

    ``exports`` maps each public name to the module that defines it, relative
    to the package (``"._run"``) or absolute.
    """
    namespace = importlib.import_module(package).__dict__
    # Read by the architecture test to see the imports these names imply.
    namespace["_LAZY_EXPORTS"] = dict(exports)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
