"""Hostile scenarios for ``fault_bench.py`` (issue 29): a row holding a lone
surrogate, a provider that echoes its key inside successful answers, a
server that trickles its answer a byte at a time, and stalled uploads
holding ``aidsafe serve``'s slots. Each runs real ``aidsafe run`` processes
and is judged on three counts, each of which must be 0: records lost (an
input row without its output record), tracebacks (on stderr), and leaks
(the key in any file the run wrote, its cache, stdout or stderr)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p))

from _common import write_inputs, write_recipe  # noqa: E402

from aidsafe.models.local._serve import ServeFront  # noqa: E402
from aidsafe.testing.mock_server import MockOpenAIServer, default_responder  # noqa: E402
from aidsafe.testing.trickle import trickle_server  # noqa: E402


@dataclass
class Scenario:
    name: str
    trials: int = 0
    lost: int = 0
    tracebacks: int = 0
    leaks: int = 0
    notes: list[str] = field(default_factory=list)


def _run(folder: Path, recipe: Path, inputs: Path, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aidsafe", "run", str(recipe), "-i", str(inputs), "-o", str(out),
                           "-q", "--workers", "2"], env=dict(env or ENV, AIDSAFE_CACHE_DIR=str(folder / "c")),
                          capture_output=True, text=True, timeout=600)


def _judge(s: Scenario, rows: list[dict], out: Path, done: subprocess.CompletedProcess, ids=None) -> list[dict]:
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []
    want = ids or [r["id"] for r in rows]
    s.trials += 1
    s.lost += len(set(want) - {str(r.get("id")) for r in records})
    s.tracebacks += done.stderr.count("Traceback")
    if done.returncode not in (0, 1):
        s.notes.append(f"exit {done.returncode}: {done.stderr.strip()[-200:]!r}")
    return records


def _recipe(folder: Path, url: str, **model_keys) -> Path:
    recipe = folder / "r.yaml"
    data = write_recipe(recipe, url, 2, **model_keys)
    recipe.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    return recipe


def surrogate_row(s: Scenario, rows: list[dict], tmp: Path, server) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    hostile = rows[:4] + [{"id": "s1", "prompt": "a\ud800b"}, {"id": "s2\udc80", "prompt": "fine"},
                          {"id": "s3", "prompt": "fine", "category": "x\udfff"}]
    inputs, out = folder / "in.jsonl", folder / "out.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in hostile), encoding="utf-8")  # "\ud800" escapes
    done = _run(folder, _recipe(folder, server.url), inputs, out)
    ids = [r["id"] for r in rows[:4]] + ["s1", "s2\ufffd", "s3"]
    records = _judge(s, hostile, out, done, ids)
    failed = sum(r["status"] == "failed" and r["error"]["type"] == "InputError" for r in records)
    if failed != 3:  # a lone surrogate in any field (prompt, id, another column) fails its row
        s.notes.append(f"{failed} InputError record(s), expected 3")


def echoed_key(s: Scenario, rows: list[dict], tmp: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    key = f"cred-{secrets.token_hex(12)}"

    def echo(messages, body):
        data = json.loads(default_responder(messages, body))
        for name, value in data.items():
            if isinstance(value, str):
                data[name] = value + f" (key {key})"
                break
        return json.dumps(data)

    inputs, out = folder / "in.jsonl", folder / "out.jsonl"
    write_inputs(inputs, rows[:4])
    with MockOpenAIServer(responder=echo) as server:
        recipe = _recipe(folder, server.url, api_key_env="PROVIDER_CRED")
        done = _run(folder, recipe, inputs, out, dict(ENV, PROVIDER_CRED=key))
    _judge(s, rows[:4], out, done)
    leaks = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    leaks += [name for name, text in (("stdout", done.stdout), ("stderr", done.stderr)) if key in text]
    s.leaks += len(leaks)
    if leaks:
        s.notes.append(f"key in {', '.join(leaks)}")


def trickle(s: Scenario, rows: list[dict], tmp: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    inputs, out = folder / "in.jsonl", folder / "out.jsonl"
    write_inputs(inputs, rows[:2])
    with trickle_server(total=2000) as (url, _):
        done = _run(folder, _recipe(folder, url, timeout=1, num_retries=0), inputs, out)
    records = _judge(s, rows[:2], out, done)
    if not all(r["status"] == "failed" and "within its timeout of 1s" in r["error"]["message"] for r in records):
        s.notes.append("a record is not failed with CallTimeout: " + str([r.get("error") for r in records])[:200])


def stalled_clients(s: Scenario, rows: list[dict], tmp: Path, server) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    inputs, out = folder / "in.jsonl", folder / "out.jsonl"
    write_inputs(inputs, rows[:4])
    front = ServeFront("127.0.0.1", 0, slots=2, max_waiting=0, read_timeout=3)
    front.start(f"http://127.0.0.1:{server.port}")
    port = int(front.url.rsplit(":", 1)[1].split("/")[0])
    stalled = []
    try:
        for _ in range(3):
            conn = socket.create_connection(("127.0.0.1", port))
            conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"mod")
            stalled.append(conn)
        done = _run(folder, _recipe(folder, front.url, num_retries=4), inputs, out)
    finally:
        for conn in stalled:
            conn.close()
        front.close()
    records = _judge(s, rows[:4], out, done)
    bad = [r["id"] for r in records if r["status"] == "failed"]
    if bad:
        s.notes.append(f"{len(bad)} record(s) failed behind the stalled clients")


def hostile_table(rows: list[dict], trials: int) -> bool:
    """Run every scenario ``trials`` times and print the table; True when
    every count is 0."""
    scenarios = {name: Scenario(name) for name in ("surrogate row", "echoed key", "trickling server",
                                                   "stalled clients (serve)")}
    with tempfile.TemporaryDirectory(prefix="aidsafe-hostile-") as name:
        tmp = Path(name)
        with MockOpenAIServer(latency=0.01) as server:
            for _ in range(trials):
                surrogate_row(scenarios["surrogate row"], rows, tmp, server)
                echoed_key(scenarios["echoed key"], rows, tmp)
                trickle(scenarios["trickling server"], rows, tmp)
                stalled_clients(scenarios["stalled clients (serve)"], rows, tmp, server)
    width = max(len(n) for n in scenarios)
    print(f"\nhostile scenarios ({trials} trial(s) each):")
    print(f"{'scenario':<{width}}  trials  lost  tracebacks  leaks")
    for sc in scenarios.values():
        print(f"{sc.name:<{width}}  {sc.trials:>6}  {sc.lost:>4}  {sc.tracebacks:>10}  {sc.leaks:>5}")
        for note in sc.notes:
            print(f"  - {note}")
    return not any(sc.lost or sc.tracebacks or sc.leaks for sc in scenarios.values())
