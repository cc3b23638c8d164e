"""Atomic file writes: the one helper every output goes through.

A reader of ``path`` sees either the old content or the whole new content,
never a partial write, even when the writer crashes or several processes
write the same path at once (the last to finish wins, each whole).

How: the content goes to a uniquely named temporary sibling of ``path`` (same
folder, so same file system), is fsynced, then moved over ``path`` with
``os.replace``; the folder is fsynced too so the rename survives power loss.
On any error the temporary is removed and ``path`` is left untouched.

The temporary is created the way ``open(path, "w")`` creates a file, with
mode ``0o666`` less the umask (``0644`` under the usual umask 022), so what
comes out is as readable as any other output. ``tempfile.mkstemp`` would give
``0600``: reports, scored files and model weights nobody else could read.

Use :func:`atomic_write` for a file handle; :func:`atomic_path` for writers
that want a path (``pyarrow.parquet.ParquetWriter``) or build a whole folder
(``datasets.Dataset.save_to_disk``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from aidsafe._util.paths import make_parent

__all__ = ["atomic_path", "atomic_write"]

_FILE_MODES = frozenset({"w", "wt", "wb"})


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, directory: bool = False, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` that replaces ``path`` on success.

    The temporary already exists when yielded: an empty file, or with
    ``directory=True`` an empty folder for the body to fill. When the body
    returns, a file is fsynced and moved over ``path``; a folder replaces
    ``path`` (whatever is there is moved aside first and deleted after, as no
    system renames a folder over a non-empty one, so only that swap is not
    atomic). When the body raises, the temporary is removed, ``path`` is
    untouched, and the exception propagates.

    Missing parent folders are created (a file in the way is a
    ``UserError``, see :func:`~aidsafe._util.paths.make_parent`). ``suffix`` ends the temporary's name
    (``.partial`` for a long download, say), which starts with ``.`` so
    listings skip it.
    """
    path = Path(path)
    make_parent(path)
    tmp = _create_temp(path, directory, suffix)
    try:
        yield tmp
        if directory:
            _replace_dir(tmp, path)
        else:
            _fsync_file(tmp)
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = None,
                 newline: str | None = None, suffix: str = ".tmp") -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it is replaced whole or not at all.

    ``mode`` is ``"w"`` (text, ``encoding`` defaults to UTF-8, not the
    locale's) or ``"wb"`` (bytes). Yields the open file; when the block ends
    normally the file is closed, fsynced and moved into place (see
    :func:`atomic_path`, which also explains ``suffix``). When the block
    raises, the old ``path`` stays as it was and no temporary is left::

        with atomic_write(out) as handle:
            for record in records:
                handle.write(json.dumps(record) + "\\n")
    """
    if mode not in _FILE_MODES:
        raise ValueError(f"atomic_write mode must be one of {sorted(_FILE_MODES)}, got {mode!r}")
    if "b" in mode:
        if encoding is not None or newline is not None:
            raise ValueError("atomic_write: binary mode takes no encoding or newline")
        kwargs: dict[str, Any] = {}
    else:
        kwargs = {"encoding": encoding or "utf-8", "newline": newline}
    with atomic_path(path, suffix=suffix) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def _create_temp(path: Path, directory: bool, suffix: str) -> Path:
    # Our own unique name rather than mkstemp/mkdtemp: those force mode
    # 0600/0700, while os.open/os.mkdir apply the umask like open() does.
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"cannot find a free temporary name next to {path}")  # pragma: no cover


def _fsync_file(path: Path) -> None:
    # Opened for writing because Windows refuses to flush a read-only handle.
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) everywhere.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace_dir(tmp: Path, path: Path) -> None:
    old = None
    if os.path.lexists(path):
        old = path.with_name(f".{path.name}.{secrets.token_hex(6)}.old")
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            with contextlib.suppress(OSError):
                os.replace(old, path)
        raise
    if old is not None:
        _remove(old)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
