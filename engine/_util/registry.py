"""Named registries of components built from configuration.

A registry maps a name (``deliberate``) to a factory. Looking up an unknown
name raises a :class:`UserError` that lists the known names and suggests the
closest one.

Third-party packages extend a registry through an entry-point group (for
example ``aidsafe.stages``): each entry point's name is the registered name
and its object the factory. They are read on the first lookup, not at import.
"""

from __future__ import annotations

import difflib
import threading
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

from aidsafe._util.errors import UserError

T = TypeVar("T")


def suggest(name: str, known: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'x'?"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """A name -> object table with helpful misses.

    ``entry_points`` names the entry-point group whose objects are added on
    the first lookup (a plugin cannot replace a built-in name); ``prepare``
    is applied to every object registered, by decorator or entry point
    (a stage kind learns its name from it).
    """

    def __init__(self, what: str, entry_points: str | None = None,
                 prepare: Callable[[str, T], T] | None = None):
        self.what = what
        self.group = entry_points
        self._prepare = prepare
        self._items: dict[str, T] = {}
        self._plugins_loaded = entry_points is None
        self._lock = threading.Lock()

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers its object under ``name``."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} registered twice")
            self._items[name] = self._prepare(name, obj) if self._prepare else obj
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plugins that undo their registration)."""
        self._items.pop(name, None)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        with self._lock:
            if self._plugins_loaded:
                return
            for ep in entry_points(group=self.group):
                if ep.name in self._items:
                    continue  # built-ins and earlier registrations win
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plugin is the user's environment, not our bug
                    raise UserError(f"the {self.what} plugin {ep.name!r} ({ep.value}, entry point group "
                                    f"{self.group!r}) failed to load: {type(exc).__name__}: {exc}; fix or "
                                    "uninstall the package that provides it") from exc
                if ep.name not in self._items:  # loading a module may have registered it already
                    self._items[ep.name] = self._prepare(ep.name, obj) if self._prepare else obj
            self._plugins_loaded = True

    def get(self, name: str) -> T:
        """The object registered as ``name``; a :class:`UserError` naming the known ones if none."""
        if name not in self._items:
            self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise UserError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """``unknown <what> 'x'; did you mean 'y'?; known: ...``."""
        return f"unknown {self.what} {name!r}{suggest(name, self.names())}; known: {', '.join(self.names())}"

    def names(self) -> list[str]:
        """Every registered name, plugins included, sorted."""
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self._load_plugins()
        return name in self._items
