"""kill -9 of a Ray run leaves no Ray process behind (issue 14, item 13), and
the rerun completes the output. Slow: starts a local Ray once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from aidsafe.testing.mock_server import MockOpenAIServer

from ..conftest import MINI, ROOT, read_jsonl

pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
psutil = pytest.importorskip("psutil")


def test_kill_9_of_a_ray_run_leaves_no_ray_process_and_the_rerun_completes(recipe_file, prompts, tmp_path):
    rows = [f"prompt {i}" for i in range(30)]
    inputs, out, journal = prompts(rows), tmp_path / "out.jsonl", tmp_path / "out.jsonl.journal"
    env = dict(os.environ, PYTHONPATH=str(ROOT), AIDSAFE_CACHE_DIR=str(tmp_path / "c"))
    with MockOpenAIServer(latency=0.1) as server:
        recipe = recipe_file(MINI.replace('model: "fake:test"', f'model: openai/mock-model, api_base: "{server.url}"'))
        command = [sys.executable, "-m", "aidsafe", "run", str(recipe), "-i", str(inputs), "-o", str(out), "-q",
                   "--executor", "ray", "--workers", "2"]
        driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (not journal.exists() or journal.read_bytes().count(b"\n") < 2):
            assert driver.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        ray_processes = [p for p in psutil.Process(driver.pid).children(recursive=True)]
        assert any(p.name() == "raylet" for p in ray_processes)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                                  for p in ray_processes):
            time.sleep(0.25)
        left = [f"{p.pid} {p.name()}" for p in ray_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"Ray processes outlived the killed driver by 15 s: {left}"
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    records = read_jsonl(out)
    assert [r["prompt"] for r in records] == rows and all(r["status"] == "ok" for r in records)
