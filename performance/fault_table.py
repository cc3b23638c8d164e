"""Fault table (issue 14): the audit's process- and network-level faults,
each tried a few times with real ``aidsafe run`` processes against the mock
server, printed as one table: check, trials, failures.

* concurrent same-output runs: two runs on one ``-o``; a failure is both
  exiting 0, the second not refusing with one ``Error:`` line naming the
  first's pid, or an output that is not every record once, in order;
* -o == -i: the input as ``-o`` (same path, a symlink, a ``x/..`` path); a
  failure is an exit other than 2 or a changed input;
* kill -9 during run: kill the run after a random number of records, rerun;
  a failure is a lost, duplicated, torn, out-of-order or non-ok record;
* SIGINT stop time: Ctrl-C while calls hang on the server; a failure is a
  stop slower than 5 s, an exit other than 130, or finished records missing
  from the output;
* never-answering server timeout: a server that accepts and never answers,
  ``timeout: 1``, ``num_retries: 1``; a failure is a run over 30 s or a
  record that is not ``failed`` with a timeout;
* key echo redaction: a provider that echoes its key (from ``api_key_env``,
  and one shaped ``sk-...``) in its errors and logs; a failure is the key in
  any file the run wrote, in its cache, or on its stdout/stderr.

Usage::

    python performance/fault_table.py [--trials 5] [--records 12]

Runs in about a minute on 2 busy cores (49-64 s at load 3-4.5). Exit status 1
if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, write_inputs, write_recipe  # noqa: E402

from aidsafe.testing.mock_server import MockOpenAIServer, default_responder  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@dataclass
class Check:
    name: str
    trials: int = 0
    failures: int = 0
    notes: list[str] = field(default_factory=list)

    def trial(self, problem: str | None) -> None:
        self.trials += 1
        if problem:
            self.failures += 1
            self.notes.append(problem)


def aidsafe(*args: str, cache: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aidsafe", *args], env=dict(env or ENV, AIDSAFE_CACHE_DIR=str(cache)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def output_problem(out: Path, rows: list[dict]) -> str | None:
    """Why ``out`` is not every input record once, in order, all ok (None if it is)."""
    if not out.exists():
        return "no output"
    records = []
    for number, line in enumerate(out.read_text(encoding="utf-8").splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            return f"torn line {number}"
    ids = [str(r.get("id")) for r in records]
    want = [r["id"] for r in rows]
    if ids != want:
        return f"{len(set(want) - set(ids))} lost, {len(ids) - len(set(ids))} duplicated, order {'ok' if sorted(ids) == sorted(want) else 'differs'}"
    bad = [r["id"] for r in records if r.get("status") != "ok"]
    return f"{len(bad)} not ok" if bad else None


# ------------------------------------------------------------------- checks

def same_output(check: Check, rows, tmp: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    inputs, recipe, out = folder / "in.jsonl", folder / "r.yaml", folder / "out.jsonl"
    held = [dict(r, prompt=f"HOLD {r['prompt']}") if i == 1 else r for i, r in enumerate(rows)]
    write_inputs(inputs, held)
    release = threading.Event()  # the first run waits on its second record until the second run is done

    def responder(messages, body):
        if "HOLD" in json.dumps(messages):
            release.wait(120)
        return default_responder(messages, body)

    with MockOpenAIServer(responder=responder) as server:
        write_recipe(recipe, server.url, 1)
        first = aidsafe("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", cache=folder / "c1")
        if not wait_until(lambda: lines(folder / "out.jsonl.journal") > 0, 120):
            first.kill()
            release.set()
            return check.trial("the first run wrote nothing in 120 s")
        second = aidsafe("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", cache=folder / "c2")
        _, err2 = second.communicate(timeout=300)
        release.set()
        _, err1 = first.communicate(timeout=300)
    errors = [line for line in err2.splitlines() if line.startswith("Error:")]
    if first.returncode == 0 and second.returncode == 0:
        return check.trial("both runs exited 0")
    if second.returncode != 1 or len(errors) != 1 or f"pid {first.pid}" not in errors[0]:
        return check.trial(f"second run: exit {second.returncode}, {err2.strip()[-200:]!r}")
    check.trial(f"first run exit {first.returncode}: {err1.strip()[-200:]!r}" if first.returncode
                else output_problem(out, held))


def output_is_input(check: Check, server, rows, tmp: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    inputs, recipe = folder / "in.jsonl", folder / "r.yaml"
    write_inputs(inputs, rows)
    write_recipe(recipe, server.url, 2)
    (folder / "link.jsonl").symlink_to(inputs)
    (folder / "sub").mkdir()
    before = inputs.read_bytes()
    for output in (inputs, folder / "link.jsonl", folder / "sub" / ".." / "in.jsonl"):
        proc = aidsafe("run", str(recipe), "-i", str(inputs), "-o", str(output), "-q", cache=folder / "c")
        _, err = proc.communicate(timeout=120)
        changed = inputs.read_bytes() != before
        check.trial(f"-o {output.relative_to(folder)}: exit {proc.returncode}, input changed: {changed}"
                    if proc.returncode != 2 or changed else None)


def kill_9(check: Check, server, rows, tmp: Path, rng: random.Random, mid_run: list[bool]) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    inputs, recipe, out = folder / "in.jsonl", folder / "r.yaml", folder / "out.jsonl"
    write_inputs(inputs, rows)
    write_recipe(recipe, server.url, 2)
    at = rng.randint(1, max(1, len(rows) - 2))
    run = aidsafe("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", cache=folder / "c")
    reached = wait_until(lambda: lines(folder / "out.jsonl.journal") >= at or run.poll() is not None, 120)
    mid_run.append(run.poll() is None)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    if not reached:
        return check.trial(f"never reached {at} records")
    again = aidsafe("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", cache=folder / "c")
    _, err = again.communicate(timeout=300)
    check.trial(f"rerun exit {again.returncode}: {err.strip()[-200:]!r}" if again.returncode
                else output_problem(out, rows))


def sigint(check: Check, rows, tmp: Path, seconds: list[float]) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    inputs, recipe, out = folder / "in.jsonl", folder / "r.yaml", folder / "out.jsonl"
    release = threading.Event()
    hanging = [dict(r, prompt=f"HANG {r['prompt']}") if i % 3 == 1 else r for i, r in enumerate(rows[:6])]
    write_inputs(inputs, hanging)

    def responder(messages, body):
        if "HANG" in json.dumps(messages):
            release.wait(120)
        return default_responder(messages, body)

    with MockOpenAIServer(responder=responder) as server:
        write_recipe(recipe, server.url, 2)
        run = aidsafe("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", "--workers", "2",
                      cache=folder / "c")
        journal = folder / "out.jsonl.journal"
        if not wait_until(lambda: lines(journal) >= 2, 120):
            run.kill()
            release.set()
            return check.trial("no record finished in 120 s")
        time.sleep(0.5)
        finished = lines(journal)
        run.send_signal(signal.SIGINT)
        started = time.monotonic()
        try:
            run.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
        took = time.monotonic() - started
        release.set()
    seconds.append(took)
    kept = lines(out)
    check.trial(f"stopped in {took:.1f}s, exit {run.returncode}, {kept} of {finished} finished records kept"
                if took > 5 or run.returncode != 130 or kept < finished else None)


def never_answers(check: Check, rows, tmp: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    inputs, recipe, out = folder / "in.jsonl", folder / "r.yaml", folder / "out.jsonl"
    write_inputs(inputs, rows[:1])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        write_recipe(recipe, f"http://127.0.0.1:{listener.getsockname()[1]}/v1", 1, timeout=1, num_retries=1)
        started = time.monotonic()
        run = aidsafe("run", str(recipe), "-i", str(inputs), "-o", str(out), "-q", cache=folder / "c")
        try:
            _, err = run.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            return check.trial("still waiting after 60 s")
        took = time.monotonic() - started
    finally:
        stop.set()
        for conn in held:
            conn.close()
        listener.close()
    record = json.loads(out.read_text(encoding="utf-8").splitlines()[0]) if out.exists() else {}
    timed_out = record.get("status") == "failed" and "timeout" in json.dumps(record.get("error")).lower()
    check.trial(None if took < 30 and timed_out and run.returncode == 1
                else f"{took:.1f}s, exit {run.returncode}, record {record.get('status')}: {err.strip()[-160:]!r}")


ECHO = """
import logging, os, sys
import aidsafe
from aidsafe.cli import main

class Echo:
    def identity(self):
        return {{"backend": "echo"}}
    def complete(self, request):
        key = os.environ["PROVIDER_CRED"]
        logging.getLogger("provider").warning("401 for key %s (also %s)", key, {shaped!r})
        raise RuntimeError(f"Incorrect API key provided: {{key}}. Authorization: Bearer {{key}}; {shaped}")

aidsafe.register_engine("echo", lambda spec: Echo())
sys.argv = ["aidsafe", "run", {recipe!r}, "-i", {inputs!r}, "-o", {out!r}, "-q"]
main()
"""


def key_echo(check: Check, rows, tmp: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    inputs, recipe, out = folder / "in.jsonl", folder / "r.yaml", folder / "out.jsonl"
    write_inputs(inputs, rows[:3])
    data = write_recipe(recipe, "http://unused", 1)
    data["models"]["default"] = {"model": "fake:echo", "api_key_env": "PROVIDER_CRED"}
    recipe.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    key = f"cred-{secrets.token_hex(12)}"  # no key shape: only api_key_env can catch it
    shaped = f"sk-proj-{secrets.token_urlsafe(24)}"  # not in the environment: only its shape can
    script = ECHO.format(shaped=shaped, recipe=str(recipe), inputs=str(inputs), out=str(out))
    done = subprocess.run([sys.executable, "-c", script], env=dict(ENV, PROVIDER_CRED=key,
                                                                  AIDSAFE_CACHE_DIR=str(folder / "c")),
                          capture_output=True, text=True, timeout=120)
    leaks = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
             and (key.encode() in p.read_bytes() or shaped.encode() in p.read_bytes())]
    leaks += [name for name, text in (("stdout", done.stdout), ("stderr", done.stderr)) if key in text or shaped in text]
    failed = out.exists() and all(json.loads(line)["status"] == "failed" for line in out.read_text().splitlines())
    check.trial(f"key found in {', '.join(leaks)}" if leaks else None if failed and done.returncode == 1
                else f"exit {done.returncode}: {done.stderr.strip()[-200:]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per check (default 5; -o == -i tries 3 paths once)")
    parser.add_argument("--records", type=int, default=12, help="records per run (default 12)")
    parser.add_argument("--latency", type=float, default=0.05, help="mock seconds per completion (default 0.05)")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    if args.trials < 1 or args.records < 6:
        parser.error("--trials >= 1, --records >= 6")
    rng = random.Random(args.seed)
    rows = [{"id": f"r{i}", "prompt": f"How do I safely dispose of old batteries, case {i}?"}
            for i in range(1, args.records + 1)]
    checks = {name: Check(name) for name in ("concurrent same-output runs", "-o == -i", "kill -9 during run",
                                             "SIGINT stop time", "never-answering server timeout",
                                             "key echo redaction")}
    stops: list[float] = []
    mid_run: list[bool] = []
    print(f"fault table: {args.trials} trial(s) per check, {args.records} records, mock latency {args.latency}s")
    print(machine_line(), flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aidsafe-fault-table-") as name:
        tmp = Path(name)
        with MockOpenAIServer(latency=args.latency) as server:
            for _ in range(args.trials):
                same_output(checks["concurrent same-output runs"], rows, tmp)
                kill_9(checks["kill -9 during run"], server, rows, tmp, rng, mid_run)
            output_is_input(checks["-o == -i"], server, rows, tmp)
        for _ in range(args.trials):
            sigint(checks["SIGINT stop time"], rows, tmp, stops)
            key_echo(checks["key echo redaction"], rows, tmp)
        for _ in range(max(1, args.trials - 1)):
            never_answers(checks["never-answering server timeout"], rows, tmp)
    checks["kill -9 during run"].name += f" ({sum(mid_run)} of {len(mid_run)} mid-run)"
    if stops:
        checks["SIGINT stop time"].name += f" (max {max(stops):.2f}s)"
    width = max(len(c.name) for c in checks.values())
    print(f"\n{'check':<{width}}  trials  failures")
    for check in checks.values():
        print(f"{check.name:<{width}}  {check.trials:>6}  {check.failures:>8}")
        for note in check.notes:
            print(f"  - {note}")
    print(f"\n{time.monotonic() - started:.0f}s; at the end, {machine_line()}")
    return 1 if any(c.failures for c in checks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
