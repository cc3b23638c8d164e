"""Where the project's data folders live.

``schemas/``, ``policies/`` and ``recipes/`` sit beside ``engine/`` (the package
``aidsafe``) in a
checkout. An installed (non-editable) package carries them as data files under
``<prefix>/share/aidsafe``. ``AIDSAFE_HOME`` overrides both.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from aidsafe._util.errors import UsageError, UserError

# engine/_util/paths.py -> the checkout (or, installed, site-packages).
_CHECKOUT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=None)
def project_root() -> Path:
    """The folder that holds ``schemas/``, ``policies/`` and ``recipes/``."""
    env = os.environ.get("AIDSAFE_HOME")
    candidates = [Path(env)] if env else []
    candidates += [_CHECKOUT, Path(sys.prefix) / "share" / "aidsafe"]
    for candidate in candidates:
        if (candidate / "schemas").is_dir():
            return candidate
    raise UserError(
        "cannot find the aidsafe data folders (schemas/, policies/, recipes/); "
        "set AIDSAFE_HOME to the project checkout"
    )


def schemas_dir() -> Path:
    return project_root() / "schemas"


def policies_dir() -> Path:
    return project_root() / "policies"


def recipes_dir() -> Path:
    return project_root() / "recipes"


def _editable_checkout() -> bool:
    """Whether the package runs from a source checkout (``pip install -e``,
    or ``PYTHONPATH``), not from an installed wheel."""
    return (_CHECKOUT / "setup.cfg").is_file()


def default_cache_dir() -> Path:
    """The run cache (LM calls, stages): ``--cache-dir`` > ``AIDSAFE_CACHE_DIR``
    > ``cache/`` in the checkout, or in the working directory for an installed
    package (one per project folder: a run's cache belongs to its project)."""
    env = os.environ.get("AIDSAFE_CACHE_DIR")
    if env:
        return Path(env)
    root = _CHECKOUT
    if (root / "cache").is_dir() or _editable_checkout():
        return root / "cache"
    return Path.cwd() / "cache"


def user_cache_dir() -> Path:
    """This user's cache folder for aidsafe, as ``platformdirs.user_cache_dir``
    places it (and as huggingface_hub places ``~/.cache/huggingface``):
    ``$XDG_CACHE_HOME/aidsafe`` or ``~/.cache/aidsafe`` on Linux,
    ``~/Library/Caches/aidsafe`` on macOS, ``%LOCALAPPDATA%\\aidsafe\\Cache``
    on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "aidsafe" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "aidsafe"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "aidsafe"


def weights_dir() -> Path:
    """Where local model weights are assembled (``<this>/models``): shared by
    every cache directory, so a fresh ``--cache-dir`` does not rebuild 491 MB.
    ``AIDSAFE_WEIGHTS_DIR`` overrides; a checkout keeps them in its ``cache/``;
    an installed package in ``$AIDSAFE_HOME/cache`` when that is set, else in
    :func:`user_cache_dir`: one copy per user, whichever folder runs it."""
    env = os.environ.get("AIDSAFE_WEIGHTS_DIR")
    if env:
        return Path(env)
    if _editable_checkout():
        return _CHECKOUT / "cache"
    home = os.environ.get("AIDSAFE_HOME")
    if home:
        return Path(home) / "cache"
    return user_cache_dir()


def resolve_inside(path: str, base: Path, allowed: list[Path], what: str) -> Path:
    """Resolve ``path`` relative to ``base`` and refuse anything outside the
    ``allowed`` folders, so a recipe cannot reach arbitrary files."""
    candidate = Path(path)
    try:
        resolved = (candidate if candidate.is_absolute() else base / candidate).resolve()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
        raise UserError(f"{what} {path!r} is not a usable file name ({exc})") from None
    for folder in allowed:
        try:
            resolved.relative_to(folder.resolve())
            return resolved
        except ValueError:
            continue
    names = ", ".join(str(a) for a in allowed)
    raise UserError(f"{what} {path!r} resolves to {_printable(resolved)}, outside the allowed folders ({names}); "
                    "move the file into one of them")


def make_parent(path: str | os.PathLike[str]) -> None:
    """Create the folder ``path`` goes in. A file in the way, or a folder
    that cannot be created, is a :class:`UserError` naming it (not a
    traceback): every output path the user gives passes through here."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
        raise UserError(f"cannot write {path}: {blocker} is a file, not a folder; "
                        "choose a path in a folder") from None
    except PermissionError as exc:
        raise UserError(f"cannot write {path}: cannot create its folder ({exc.strerror}); "
                        "choose a folder you can write to") from None


def _printable(path: Path) -> str:
    """A path for a one-line message: a control character (a CR in a name) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))
def refuse_overwrite(output: str | os.PathLike[str], reads, what: str = "output", folder: bool = False) -> None:
    """A :class:`UsageError` when ``output`` is one of the files the command
    ``reads`` (an input, the recipe and its parents, policies, prompts,
    judges), by another name or through a link; with ``folder`` (an output
    that is a folder, replaced whole), also when one of them lies inside it.
    Every command that writes checks its outputs here before writing."""
    out = Path(output)
    try:
        real_out = out.resolve()
    except (OSError, ValueError):
        return  # not a usable name: the writer reports it with its path
    for path in reads:
        if path is None or str(path).startswith("hf:"):
            continue
        read = Path(path)
        try:
            real = read.resolve()
            same = real == real_out or (out.exists() and read.exists() and os.path.samefile(out, read))
            inside = folder and real.is_relative_to(real_out)
        except (OSError, ValueError):
            continue
        if same or inside:
            how = "is the same file as" if same else "is a folder that holds"
            raise UsageError(f"{what} {out} {how} {read}, which this command reads: writing would destroy it; "
                             f"write elsewhere, e.g. {_elsewhere(out)}")


def _elsewhere(out: Path) -> Path:
    return out.with_name(f"{out.stem}.out{out.suffix}") if out.suffix else out.with_name(out.name + "-out")
