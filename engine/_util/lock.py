"""An exclusive, non-blocking lock on a file that one process holds while it
writes something (a run holds ``OUT.lock`` for its whole run).

The operating system's ``flock`` does the locking, so a holder that dies,
``kill -9`` included, releases it at once; the lock file only names the
holder's pid for the error a second process gets. The holder removes the file
when it is done. A process that opened the file just before that removal
would lock a file no longer in the folder: it checks, after locking, that the
path still names the file it locked, and starts again if not.

Where ``fcntl`` does not exist (Windows), or the file system cannot lock
(some network mounts), there is no locking: the latter logs a warning.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LockHeld", "exclusive_lock"]

_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class LockHeld(Exception):
    """Another process holds the lock; ``pid`` is its pid when it wrote one."""

    def __init__(self, path: Path, pid: int | None):
        super().__init__(f"{path} is held by " + (f"pid {pid}" if pid else "another process"))
        self.path = path
        self.pid = pid


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` for the block, or raise
    :class:`LockHeld` at once (never wait) if another process holds it. The
    folder must exist. The file holds this process's pid while locked and is
    removed afterwards."""
    path = Path(path)
    if fcntl is None:  # pragma: no cover - Windows
        yield path
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by child processes (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LockHeld(path, pid) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in _NO_LOCKING:
                raise
            with contextlib.suppress(OSError):
                os.unlink(path)
            # A file system without flock (some network mounts): run unlocked, and say so.
            logging.getLogger(__name__).warning("%s: this file system cannot lock files (%s); another process "
                                                "writing the same output would not be stopped", path, exc.strerror)
            yield path
            return
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file we opened: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        # Unlink while still locked, so nobody can lock this file and then lose it.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
