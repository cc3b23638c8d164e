"""Tests for aidsafe._util.atomic: the one atomic file write."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from aidsafe._util.atomic import atomic_path, atomic_write


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != name)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_new_file_gets_0644_under_umask_022(tmp_path, umask_022):
    out = tmp_path / "report.html"
    with atomic_write(out) as handle:
        handle.write("<html></html>")
    assert out.read_text(encoding="utf-8") == "<html></html>"
    assert _mode(out) == 0o644
    # The same mode as a plain open() would give next to it.
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert _mode(out) == _mode(plain)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_mode_honours_a_stricter_umask(tmp_path):
    old = os.umask(0o077)
    try:
        with atomic_write(tmp_path / "private.txt") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.txt") == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_atomic_path_file_and_folder_modes(tmp_path, umask_022):
    with atomic_path(tmp_path / "data.parquet") as tmp:
        tmp.write_bytes(b"PAR1")
    assert _mode(tmp_path / "data.parquet") == 0o644
    with atomic_path(tmp_path / "ds", directory=True) as tmp:
        (tmp / "state.json").write_text("{}")
    assert _mode(tmp_path / "ds") == 0o755


def test_text_and_binary_modes(tmp_path):
    with atomic_write(tmp_path / "t.txt") as handle:
        handle.write("héllo\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\n".encode("utf-8")  # UTF-8 whatever the locale
    with atomic_write(tmp_path / "b.bin", "wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path, "t.txt") == ["b.bin"]


def test_missing_parent_folders_are_created(tmp_path):
    out = tmp_path / "a" / "b" / "c.json"
    with atomic_write(out) as handle:
        handle.write("{}")
    assert out.read_text() == "{}"


def test_refuses_modes_that_are_not_a_fresh_write(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    with pytest.raises(ValueError, match="binary"):
        with atomic_write(tmp_path / "x", "wb", encoding="utf-8"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_exception_leaves_old_content_and_no_temp_file(tmp_path):
    out = tmp_path / "scored.jsonl"
    out.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(out) as handle:
            handle.write("new, half written")
            raise RuntimeError("boom")
    assert out.read_text() == "old\n"
    assert _leftovers(tmp_path, out.name) == []


def test_exception_on_new_path_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "new.txt") as handle:
            handle.write("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_old_content(tmp_path, monkeypatch):
    out = tmp_path / "last_run.json"
    out.write_text('{"old": true}')

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        with atomic_write(out) as handle:
            handle.write('{"new": true}')
    monkeypatch.undo()
    assert out.read_text() == '{"old": true}'
    assert _leftovers(tmp_path, out.name) == []


def test_suffix_names_the_temporary(tmp_path):
    seen = []
    with atomic_write(tmp_path / "model.gguf", "wb", suffix=".partial") as handle:
        seen = [p.name for p in tmp_path.iterdir()]
        handle.write(b"GGUF")
    assert len(seen) == 1 and seen[0].startswith(".model.gguf.") and seen[0].endswith(".partial")
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_folder_replaces_an_existing_folder(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.arrow").write_text("old")
    with atomic_path(out, directory=True) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "new.arrow").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.arrow"]
    assert _leftovers(tmp_path, "ds") == []


def test_failed_folder_write_keeps_the_old_folder(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.arrow").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(out, directory=True) as tmp:
            (tmp / "half.arrow").write_text("x")
            raise RuntimeError("save_to_disk failed")
    assert sorted(p.name for p in out.iterdir()) == ["old.arrow"]
    assert _leftovers(tmp_path, "ds") == []


def _payload(i: int) -> str:
    # Big enough that an interleaved or torn write would show.
    return f"writer {i}\n" * 20000


def test_concurrent_threads_each_write_a_whole_file(tmp_path):
    out = tmp_path / "shared.txt"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(i: int) -> None:
        try:
            start.wait()
            for _ in range(5):
                with atomic_write(out) as handle:
                    handle.write(_payload(i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert out.read_text() in {_payload(i) for i in range(8)}
    assert _leftovers(tmp_path, out.name) == []


def _process_writer(path: str, i: int) -> None:
    for _ in range(5):
        with atomic_write(path) as handle:
            handle.write(_payload(i))


def test_concurrent_processes_each_write_a_whole_file(tmp_path):
    out = tmp_path / "shared.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(out), i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert out.read_text() in {_payload(i) for i in range(4)}
    assert _leftovers(tmp_path, out.name) == []


def test_no_other_module_hand_writes_atomic_files():
    """One helper, used everywhere: no second temp-file-and-rename to drift."""
    engine = Path(__file__).resolve().parents[2] / "engine"
    offenders = [str(p.relative_to(engine)) for p in engine.rglob("*.py")
                 if p.name != "atomic.py" and any(s in p.read_text(encoding="utf-8")
                                                  for s in ("mkstemp(", "os.replace(", "NamedTemporaryFile("))]
    assert offenders == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_reports_come_out_0644(tmp_path, umask_022):
    from aidsafe.evaluation._report import write_html

    out = write_html(tmp_path / "r" / "report.html", "t", [])
    assert _mode(out) == 0o644
