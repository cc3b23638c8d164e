"""A damaged or unusable cache never fails a record (issue 14, items 6 and 8):
entries of the wrong shape are dropped and recomputed, a damaged SQLite file is
moved aside and rebuilt, and a read-only directory means a run without the cache."""

from __future__ import annotations

import gc
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

import aidsafe
from aidsafe.cli._main import main
from aidsafe.store._cache import Cache

from ..conftest import MINI, ROOT, options, read_jsonl


def _run(recipe, inputs, out, cache_dir):
    summary = aidsafe.run(recipe, inputs, out, options(cache_dir))
    return summary, read_jsonl(out)


def _rewrite_entries(directory, section, change):
    cache = Cache(directory)
    store = cache._section(section)
    for key in list(store.iterkeys()):
        value = json.loads(store.get(key))
        store.set(key, json.dumps(change(value)))
    cache.close()


@pytest.mark.parametrize("change", [
    lambda v: {k: x for k, x in v.items() if k != "usage"},     # a key missing
    lambda v: {k: x for k, x in v.items() if k != "updates"},
    lambda v: dict(v, updates=["not", "a", "dict"]),            # the wrong shape
    lambda v: dict(v, usage=None),
], ids=["no-usage", "no-updates", "updates-list", "usage-none"])
def test_a_stage_entry_of_the_wrong_shape_is_a_miss(fake, recipe_file, prompts, tmp_path, change):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs, cache_dir = recipe_file(MINI), prompts(["alpha", "beta"]), tmp_path / "c"
    _run(recipe, inputs, tmp_path / "a.jsonl", cache_dir)
    _rewrite_entries(cache_dir, "stages", change)
    summary, records = _run(recipe, inputs, tmp_path / "b.jsonl", cache_dir)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert summary.stage_hits == 0 and summary.stage_misses == 8
    # the dropped entries were rewritten whole: the next run replays them
    summary, records = _run(recipe, inputs, tmp_path / "c.jsonl", cache_dir)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert summary.stage_hits == 8 and summary.stage_misses == 0


def test_a_call_entry_of_the_wrong_shape_is_dropped(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs, cache_dir = recipe_file(MINI), prompts(["alpha"]), tmp_path / "c"
    _run(recipe, inputs, tmp_path / "a.jsonl", cache_dir)
    _rewrite_entries(cache_dir, "calls", lambda v: dict(v, response={"garbled": True}))
    _rewrite_entries(cache_dir, "stages", lambda v: {})
    calls = fake.calls
    _, records = _run(recipe, inputs, tmp_path / "b.jsonl", cache_dir)
    assert records[0]["status"] == "ok" and fake.calls == 2 * calls
    _run(recipe, inputs, tmp_path / "c.jsonl", cache_dir)
    assert fake.calls == 2 * calls


def _garble(path):
    data = bytearray(path.read_bytes())
    # keep the header, so SQLite opens it and finds the pages damaged
    data[100:] = b"\xa5" * (len(data) - 100)
    path.write_bytes(bytes(data))


def _truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 3)


def _not_a_database(path):
    path.write_bytes(b"this is not a database" * 300)


@pytest.mark.parametrize("damage", [_garble, _truncate, _not_a_database])
@pytest.mark.parametrize("section", ["stages", "calls"])
def test_a_damaged_cache_file_is_moved_aside_and_rebuilt(fake, recipe_file, prompts, tmp_path, capfd,
                                                         damage, section):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs, cache_dir = recipe_file(MINI), prompts(["alpha", "beta"]), tmp_path / "c"
    _run(recipe, inputs, tmp_path / "a.jsonl", cache_dir)
    gc.collect()  # the last connection to close folds the write-ahead log into the file
    assert not (cache_dir / section / "cache.db-wal").exists()
    damage(cache_dir / section / "cache.db")
    if section == "calls":  # so the run reaches the LM-call cache
        shutil.rmtree(cache_dir / "stages")
    calls = fake.calls
    capfd.readouterr()
    summary, records = _run(recipe, inputs, tmp_path / "b.jsonl", cache_dir)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert summary.statuses["failed"] == 0
    err = capfd.readouterr().err
    moved = sorted(p.name for p in cache_dir.iterdir() if ".corrupt-" in p.name)
    assert len(moved) == 1 and moved[0].startswith(section + ".corrupt-")
    warnings = [line for line in err.splitlines() if "corrupt" in line]
    assert len(warnings) == 1 and moved[0] in warnings[0] and warnings[0].startswith("warning: ")
    assert "Traceback" not in err
    # the rebuilt file serves the next run
    summary, records = _run(recipe, inputs, tmp_path / "c.jsonl", cache_dir)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert summary.stage_hits == 8
    assert fake.calls == (2 * calls if section == "calls" else calls)  # damaged: asked again, once
    assert "corrupt" not in capfd.readouterr().err


def test_threads_meeting_a_damaged_file_move_it_aside_once(fake, recipe_file, prompts, tmp_path, capfd):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs, cache_dir = recipe_file(MINI), prompts([f"prompt {i}" for i in range(12)]), tmp_path / "c"
    aidsafe.run(recipe, inputs, tmp_path / "a.jsonl", options(cache_dir, workers=4))
    gc.collect()
    _garble(cache_dir / "stages" / "cache.db")
    capfd.readouterr()
    summary = aidsafe.run(recipe, inputs, tmp_path / "b.jsonl", options(cache_dir, workers=4))
    err = capfd.readouterr().err
    assert summary.statuses == {"ok": 12}
    assert len([p for p in cache_dir.iterdir() if ".corrupt-" in p.name]) == 1
    assert len([line for line in err.splitlines() if line.startswith("warning: ")]) == 1, err


def test_processes_meeting_a_damaged_file_move_it_aside_once(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs, cache_dir = recipe_file(MINI), prompts([f"prompt {i}" for i in range(8)]), tmp_path / "c"
    _run(recipe, inputs, tmp_path / "a.jsonl", cache_dir)
    gc.collect()
    _not_a_database(cache_dir / "stages" / "cache.db")
    script = tmp_path / "cli.py"
    script.write_text(_CLI_WITH_FAKE)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, str(script), "run", str(recipe), "-i", str(inputs), "--model",
                               "default=fake:test", "--cache-dir", str(cache_dir), "--workers", "2",
                               "-o", str(tmp_path / f"o{i}.jsonl")], env=env, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    errs = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], errs
    for i in range(3):
        assert {r["status"] for r in read_jsonl(tmp_path / f"o{i}.jsonl")} == {"ok"}
    assert len([p for p in cache_dir.iterdir() if ".corrupt-" in p.name]) == 1
    warnings = [line for err in errs for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and all("Traceback" not in err for err in errs), errs


def test_cache_stats_on_a_damaged_file_moves_it_aside(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    _run(recipe_file(MINI), prompts(["alpha"]), tmp_path / "a.jsonl", tmp_path / "c")
    gc.collect()
    _not_a_database(tmp_path / "c" / "calls" / "cache.db")
    result = CliRunner().invoke(main, ["cache", "stats", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("warning: ")]) == 1
    assert "stages" in result.output and "Traceback" not in result.output


def test_a_cache_damaged_while_open_is_rebuilt(fake, recipe_file, prompts, tmp_path, capfd):
    cache = Cache(tmp_path / "c")
    cache.put_stage("k", {"updates": {}, "seconds": 0, "usage": {}}, "s")
    assert cache.get_stage("k") is not None
    store = cache._section("stages")
    store.check()  # checkpoint so the damage below reaches everything
    cache.close()
    cache = Cache(tmp_path / "c")
    assert cache.get_stage("k") is not None
    _not_a_database(tmp_path / "c" / "stages" / "cache.db")
    for name in ("cache.db-wal", "cache.db-shm"):
        (tmp_path / "c" / "stages" / name).unlink(missing_ok=True)
    # an open connection meets the damage on its next statement
    try:
        cache._section("stages")._sql("PRAGMA schema_version")
    except sqlite3.DatabaseError:
        pass
    assert cache.get_stage("k") is None
    cache.put_stage("k", {"updates": {}, "seconds": 0, "usage": {}}, "s")
    assert cache.get_stage("k") is not None
    cache.close()


# -- item 8: a directory the cache cannot write --------------------------------

needs_permissions = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                                       reason="root ignores directory permissions")


@needs_permissions
@pytest.mark.parametrize("warm", [False, True], ids=["empty", "filled"])
def test_a_read_only_cache_directory_runs_without_the_cache(fake, recipe_file, prompts, tmp_path, capfd, warm):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs, cache_dir = recipe_file(MINI), prompts(["alpha", "beta", "gamma"]), tmp_path / "c"
    cache_dir.mkdir()
    if warm:
        _run(recipe, inputs, tmp_path / "a.jsonl", cache_dir)
    capfd.readouterr()
    os.chmod(cache_dir, 0o555)
    for sub in cache_dir.iterdir():
        if sub.is_dir():
            os.chmod(sub, 0o555)
    try:
        summary, records = _run(recipe, inputs, tmp_path / "b.jsonl", cache_dir)
        err = capfd.readouterr().err
    finally:
        for sub in [cache_dir, *cache_dir.iterdir()]:
            if sub.is_dir():
                os.chmod(sub, 0o755)
    assert [r["status"] for r in records] == ["ok", "ok", "ok"]
    assert summary.statuses["failed"] == 0
    lines = [line for line in err.splitlines() if str(cache_dir) in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "without the cache" in lines[0]
    assert "Traceback" not in err and "PermissionError" not in err


@needs_permissions
def test_a_read_only_cache_directory_through_the_cli(fake, recipe_file, prompts, tmp_path):
    fake.rules = [("CRITIC_", {"agree": True})]
    recipe, inputs, cache_dir = recipe_file(MINI), prompts(["alpha"]), tmp_path / "c"
    _run(recipe, inputs, tmp_path / "a.jsonl", cache_dir)
    gc.collect()
    for folder in (cache_dir, *cache_dir.iterdir()):
        if folder.is_dir():
            os.chmod(folder, 0o555)
    try:
        runner = CliRunner()
        result = runner.invoke(main, ["run", str(recipe), "-i", str(inputs), "-o", str(tmp_path / "o.jsonl"),
                                      "--model", "default=fake:test", "--cache-dir", str(cache_dir)])
        assert result.exit_code == 0, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert read_jsonl(tmp_path / "o.jsonl")[0]["status"] == "ok"
        for args in (["cache", "stats"], ["cache", "clear", "--yes"]):
            result = runner.invoke(main, [*args, "--cache-dir", str(cache_dir)])
            assert result.exit_code == 1, result.output
            assert isinstance(result.exception, SystemExit)
            errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1 and str(cache_dir) in errors[0], result.output
    finally:
        for folder in (cache_dir, *cache_dir.iterdir()):
            if folder.is_dir():
                os.chmod(folder, 0o755)


_CLI_WITH_FAKE = """
import sys, aidsafe
from aidsafe.testing.fake import FakeEngine
from aidsafe.cli._main import main
aidsafe.register_engine("test", lambda spec: FakeEngine([("CRITIC_", {"agree": True})]))
main(sys.argv[1:])
"""


def _read_only_mount_works() -> bool:
    """Whether this machine can give a folder a read-only bind mount in a
    private mount namespace (which binds root too, unlike chmod)."""
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind / / && mount -o remount,bind,ro / /"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _read_only_mount_works(), reason="no unshare/mount for a read-only folder")
def test_a_read_only_mounted_cache_through_the_cli(recipe_file, prompts, tmp_path):
    """The real thing, for root too: the cache folder on a read-only mount."""
    recipe, inputs, cache_dir = recipe_file(MINI), prompts(["alpha", "beta"]), tmp_path / "c"
    script = tmp_path / "cli.py"
    script.write_text(_CLI_WITH_FAKE)
    run = [sys.executable, str(script), "run", str(recipe), "-i", str(inputs), "--model", "default=fake:test",
           "--cache-dir", str(cache_dir), "-o"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    warm = subprocess.run([*run, str(tmp_path / "a.jsonl")], capture_output=True, text=True, env=env, timeout=300)
    assert warm.returncode == 0, warm.stderr
    q = shlex.quote
    commands = [f"mount --bind {q(str(cache_dir))} {q(str(cache_dir))}",
                f"mount -o remount,bind,ro {q(str(cache_dir))}",
                f"{shlex.join([*run, str(tmp_path / 'b.jsonl')])}; echo rc=$? >&2",
                f"{shlex.join([sys.executable, str(script), 'cache', 'stats', '--cache-dir', str(cache_dir)])}; "
                "echo rc=$? >&2"]
    result = subprocess.run(["unshare", "-m", "sh", "-c", " && ".join(commands)], capture_output=True, text=True,
                            env=env, timeout=300)
    err = result.stderr
    assert "Traceback" not in err and "PermissionError" not in err, err
    assert [r["status"] for r in read_jsonl(tmp_path / "b.jsonl")] == ["ok", "ok"]
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "read-only" in warnings[0] and "without the cache" in warnings[0], err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(cache_dir) in errors[0] and "read-only" in errors[0], err
    assert [line for line in err.splitlines() if line.startswith("rc=")] == ["rc=0", "rc=1"]


@pytest.fixture
def read_only_sqlite(monkeypatch):
    """Call it to make SQLite refuse the cache files, as on a read-only
    folder; unlike chmod, this holds for root too."""
    connect = sqlite3.connect

    def refuse(database, *args, **kwargs):
        if str(database).endswith("cache.db"):
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return connect(database, *args, **kwargs)

    return lambda: monkeypatch.setattr(sqlite3, "connect", refuse)


def test_a_read_only_database_runs_without_the_cache(fake, recipe_file, prompts, tmp_path, capfd, read_only_sqlite):
    read_only_sqlite()
    fake.rules = [("CRITIC_", {"agree": True})]
    summary, records = _run(recipe_file(MINI), prompts(["alpha", "beta"]), tmp_path / "b.jsonl", tmp_path / "c")
    err = capfd.readouterr().err
    assert [r["status"] for r in records] == ["ok", "ok"]
    lines = [line for line in err.splitlines() if "without the cache" in line]
    assert len(lines) == 1 and "readonly" in lines[0] and str(tmp_path / "c") in lines[0]
    assert "Traceback" not in err


def test_a_cache_folder_under_a_file_runs_without_the_cache(fake, recipe_file, prompts, tmp_path, capfd):
    fake.rules = [("CRITIC_", {"agree": True})]
    (tmp_path / "afile").write_text("x")
    summary, records = _run(recipe_file(MINI), prompts(["alpha"]), tmp_path / "b.jsonl", tmp_path / "afile" / "c")
    err = capfd.readouterr().err
    assert records[0]["status"] == "ok"
    assert len([line for line in err.splitlines() if "without the cache" in line]) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["cache", "stats"], ["cache", "clear", "--yes"],
                                  ["cache", "clear", "--stage", "refine", "--yes"]])
def test_cache_commands_on_a_read_only_cache_say_error(fake, recipe_file, prompts, tmp_path, read_only_sqlite, args):
    fake.rules = [("CRITIC_", {"agree": True})]
    _run(recipe_file(MINI), prompts(["alpha"]), tmp_path / "a.jsonl", tmp_path / "c")
    gc.collect()
    read_only_sqlite()
    result = CliRunner().invoke(main, [*args, "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(tmp_path / "c") in errors[0] and "--cache-dir" in errors[0], result.output
    assert "Traceback" not in result.output


def test_an_unwritable_cache_is_simulated_without_chmod(fake, recipe_file, prompts, tmp_path, capfd, monkeypatch):
    """The same as above where permissions do not apply (root): every open fails."""
    import diskcache

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "c"))

    monkeypatch.setattr(diskcache, "Cache", refuse)
    fake.rules = [("CRITIC_", {"agree": True})]
    summary, records = _run(recipe_file(MINI), prompts(["alpha", "beta"]), tmp_path / "b.jsonl", tmp_path / "c")
    err = capfd.readouterr().err
    assert [r["status"] for r in records] == ["ok", "ok"]
    lines = [line for line in err.splitlines() if "without the cache" in line]
    assert len(lines) == 1 and "Traceback" not in err
