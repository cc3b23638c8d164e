"""Fault benchmark (issue 8): ``recipes/aidsafe.yaml`` against a mock server
that fails 20% of calls with 429/500 (429s carry ``Retry-After: 0.05``) and
truncates 10% of answers to half (``finish_reason: length``).

It checks that nothing is lost: one output record per input, each id exactly
once, every record ``ok``/``filtered`` or ``failed`` with a reason; and it
prints the status counts, failure reasons, what the server did (errors sent,
answers truncated) and the retries that implies:

* transport retries: requests whose body the server had already seen (the
  engine's backoff loop in ``RemoteEngine`` resends the same request);
* parse retries: distinct requests carrying the ``format_error`` field (the
  agent re-asks after an answer it could not parse);
* the delay the server observed between a failed request and its resend,
  for 429 (should follow Retry-After) and 500 (full-jitter backoff).

It also scans the output for values that are not whole mock answers: a
truncated answer that the JSON adapter repaired and accepted.

By default it runs twice: with the engine's default ``num_retries`` (recipe
key unset) and with ``num_retries: 1``, where some calls give up and records
must end ``failed`` with the reason.

Then it runs the hostile scenarios of :mod:`_hostile` (issue 29: a lone
surrogate in a row, a key echoed in successful answers, a trickling server,
stalled clients holding ``aidsafe serve``'s slots) as real ``aidsafe run``
processes and prints their table: lost records, tracebacks and key leaks,
each of which must be 0 (MET).

Usage::

    python performance/fault_bench.py [--records 100] [--retries default,1] [--latency 0.02] [--workers 8]
                                      [--hostile-trials 2] [--hostile-only]

Exit status is 0 whenever the runs complete, even if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    XSTEST,
    body_digest,
    load_prompts,
    machine_line,
    verdict,
    write_inputs,
    write_recipe,
)

from aidsafe import RunOptions, run  # noqa: E402
from aidsafe.testing.mock_server import MockOpenAIServer  # noqa: E402

# A whole value from the mock's default responder (aidsafe.testing._answers):
# "mock <field> <8 hex>", a response that declines ending ": I can't help with
# that.". A truncated answer that was repaired ends early.
WHOLE_MOCK_VALUE = re.compile(r"mock [a-z_]+ [0-9a-f]{8}(: I can't help with that\.)?")
TRANSPORT_ERRORS = ("LMRateLimitError", "LMServerError", "LMTimeoutError", "LMConnectionError", "ModelError")


@dataclass
class Event:
    """One completion request as the server handled it."""

    digest: str
    start: float
    end: float
    status: int | None  # injected error status, None if served
    truncated: bool
    parse_retry: bool  # the request carries the agent's format_error field


class RecordingServer(MockOpenAIServer):
    """The mock server, also recording each completion request's timing and
    the fault it drew (the base class counts errors but not truncations)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: list[Event] = []
        self._fault = threading.local()

    def _draw_faults(self):
        status, truncate = super()._draw_faults()
        self._fault.value = (status, truncate and status is None)
        return status, truncate

    def _complete(self, handler, body, messages, payload_fn):
        self._fault.value = (None, False)
        start = time.monotonic()
        try:
            return super()._complete(handler, body, messages, payload_fn)
        finally:
            status, truncated = self._fault.value
            text = json.dumps(messages)
            event = Event(body_digest(body), start, time.monotonic(), status, truncated,
                          "format_error ## ]]" in text)
            with self._lock:
                self.events.append(event)


def partial_values(record: dict) -> list[str]:
    """Values in a record's data fields that are not whole mock answers."""
    values: list[str] = []
    values += record.get("intents") or []
    values += record.get("cot") or []
    values.append(record.get("response") or "")
    initial = record.get("initial") or {}
    values += initial.get("thoughts") or []
    values.append(initial.get("response") or "")
    values += record.get("all_thoughts") or []
    for entry in (record.get("deliberation") or {}).get("log", []):
        values += entry.get("thoughts") or []
        values.append(entry.get("response") or "")
    return [v for v in values if v and not WHOLE_MOCK_VALUE.fullmatch(v)]


@dataclass
class Outcome:
    label: str
    num_retries: int | None
    wall: float
    summary: object
    records: list[dict]
    events: list[Event]
    failures: dict
    checks: list[tuple[str, bool, str]] = field(default_factory=list)


def run_once(label: str, num_retries: int | None, args, rows: list[dict], tmp: Path) -> Outcome:
    folder = tmp / label.replace(" ", "_")
    folder.mkdir()
    inputs, recipe, output = folder / "inputs.jsonl", folder / "recipe.yaml", folder / "out.jsonl"
    write_inputs(inputs, rows)
    with RecordingServer(latency=args.latency, fail_rate=args.fail_rate, fail_statuses=(429, 500),
                         retry_after=args.retry_after, truncate_rate=args.truncate_rate, seed=args.seed) as server:
        extra = {"num_retries": num_retries} if num_retries is not None else {}
        write_recipe(recipe, server.url, args.workers, **extra)
        options = RunOptions(cache_dir=folder / "cache", workers=args.workers, progress=False)
        started = time.perf_counter()
        summary = run(recipe, inputs, output, options)
        wall = time.perf_counter() - started
        with server._lock:
            events, failures = list(server.events), dict(server.failures)
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Outcome(label, num_retries, wall, summary, records, events, failures)


def report(o: Outcome, rows: list[dict], retry_after: float) -> None:
    records, events = o.records, o.events
    statuses = Counter(r.get("status") for r in records)
    ids = Counter(str(r.get("id")) for r in records)
    input_ids = [r["id"] for r in rows]
    print(f"\n=== {o.label}: num_retries {o.num_retries if o.num_retries is not None else 'unset (engine default)'}, "
          f"{len(rows)} records, {o.wall:.2f}s")

    # What the server did.
    sent = Counter(e.status for e in events if e.status is not None)
    truncated = sum(e.truncated for e in events)
    served = sum(1 for e in events if e.status is None)
    print(f"server: {len(events)} completion requests, {served} answered "
          f"({truncated} truncated), errors sent: "
          + (", ".join(f"{n} x {s}" for s, n in sorted(sent.items())) or "none")
          + f" (server.failures: {o.failures})")

    # Retries implied, from each request's predecessor with the same body:
    # after an error it is a transport resend; otherwise a request carrying
    # format_error is a parse re-ask (a second re-ask can repeat the first's
    # body exactly, when the parse error reads the same).
    resends = reasks = 0
    delays: dict[int, list[float]] = {429: [], 500: []}
    last: dict[str, Event] = {}
    for e in sorted(events, key=lambda e: e.start):
        prev = last.get(e.digest)
        if prev is not None and prev.status is not None:
            resends += 1
            if prev.status in delays:
                delays[prev.status].append(e.start - prev.end)
        elif e.parse_retry:
            reasks += 1
        last[e.digest] = e
    failed = [r for r in records if r.get("status") == "failed"]
    gave_up = sum(1 for r in failed if (r.get("error") or {}).get("type") in TRANSPORT_ERRORS)
    print(f"retries implied: {resends + reasks} = {resends} transport resends (server errors {sum(sent.values())} "
          f"- calls that gave up {gave_up} = {sum(sent.values()) - gave_up}) + {reasks} parse re-asks "
          f"(after {truncated} truncated answers)")
    for status, values in delays.items():
        if values:
            print(f"  resend delay after {status}: n={len(values)}, median {1000 * statistics.median(values):.0f} ms, "
                  f"min {1000 * min(values):.0f} ms, max {1000 * max(values):.0f} ms")

    # Outcomes.
    print("statuses: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    reasons = Counter()
    for r in failed:
        err = r.get("error") or {}
        message = str(err.get("message", "")).strip().splitlines()[0] if err.get("message") else ""
        reasons[f"{err.get('type')} in stage {err.get('stage')}: {message[:80]}"] += 1
    for reason, n in reasons.most_common():
        print(f"  failed: {n} x {reason}")
    stops = Counter((r.get("deliberation") or {}).get("stop_reason") for r in records if r.get("status") == "ok")
    print("deliberation stop reasons (ok records): " + ", ".join(f"{n} {s}" for s, n in stops.most_common()))

    partial = [(r["id"], v) for r in records if r.get("status") == "ok" for v in partial_values(r)]
    partial_records = len({rid for rid, _ in partial})
    if partial:
        print(f"values that are not whole mock answers (truncated answers accepted): {len(partial)} in "
              f"{partial_records} ok record(s), e.g. {partial[0][1]!r} (record {partial[0][0]})")

    every_reason = all((r.get("error") or {}).get("type") and (r.get("error") or {}).get("message") for r in failed)
    filtered_reason = all(r.get("filtered_reason") for r in records if r.get("status") == "filtered")
    o.checks = [
        ("output records == input records", len(records) == len(rows) and o.summary.total == len(rows),
         f"{len(records)} output, {len(rows)} input, summary total {o.summary.total}"),
        ("each input id exactly once", set(ids) == set(input_ids) and all(n == 1 for n in ids.values()),
         (f"{len(ids)} distinct ids, {sum(1 for n in ids.values() if n > 1)} repeated, "
          f"{len(set(input_ids) - set(ids))} missing")),
        ("output in input order", [str(r.get("id")) for r in records] == input_ids, ""),
        ("every record ok/filtered/failed", set(statuses) <= {"ok", "filtered", "failed"},
         ", ".join(sorted(map(str, statuses)))),
        ("every failed record has an error type and message", every_reason, f"{len(failed)} failed"),
        ("every filtered record has a reason", filtered_reason, f"{statuses.get('filtered', 0)} filtered"),
        ("every server error was resent or surfaced as a failed record", resends == sum(sent.values()) - gave_up,
         f"{resends} resends + {gave_up} gave up vs {sum(sent.values())} errors"),
        ("resends after 429 wait at least Retry-After", all(d >= retry_after for d in delays[429]),
         f"min {1000 * min(delays[429]):.0f} ms vs {1000 * retry_after:.0f} ms" if delays[429] else "no 429 resent"),
        ("no truncated answer accepted as data", not partial,
         f"{len(partial)} partial value(s) in {partial_records} ok record(s)"),
    ]
    print("targets:")
    for name, ok, detail in o.checks:
        print(f"  [{verdict(ok):>6}] {name}" + (f": {detail}" if detail else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100, help="input records (default 100)")
    parser.add_argument("--retries", default="default,1",
                        help="comma-separated num_retries per run; 'default' leaves the recipe key unset (default: default,1)")
    parser.add_argument("--latency", type=float, default=0.02, help="mock seconds per completion (default 0.02)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent records (default 8)")
    parser.add_argument("--fail-rate", type=float, default=0.2, help="share of calls answered 429/500 (default 0.2)")
    parser.add_argument("--truncate-rate", type=float, default=0.1, help="share of answers truncated (default 0.1)")
    parser.add_argument("--retry-after", type=float, default=0.05, help="Retry-After on 429s, seconds (default 0.05)")
    parser.add_argument("--seed", type=int, default=8, help="fault RNG seed (default 8)")
    parser.add_argument("--hostile-trials", type=int, default=2, help="trials per hostile scenario (default 2; 0: none)")
    parser.add_argument("--hostile-only", action="store_true", help="run only the hostile scenarios")
    args = parser.parse_args(argv)
    try:
        plan = [None if s.strip() == "default" else int(s) for s in args.retries.split(",") if s.strip()]
    except ValueError:
        parser.error("--retries: expected integers or 'default', e.g. default,1")
    if not 1 <= args.records <= 1000 or args.workers < 1 or not plan or any(p is not None and p < 0 for p in plan):
        parser.error("--records 1..1000 (the server keeps the last 10,000 request bodies), --workers >= 1, "
                     "--retries >= 0")

    # DSPy logs one WARNING line per truncated answer; the counts are printed below.
    logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
    rows = load_prompts(args.records, XSTEST)
    tmp = Path(tempfile.mkdtemp(prefix="aidsafe-fault-bench-"))
    print(f"fault bench: {args.records} records, {args.workers} workers, mock latency {args.latency}s, "
          f"{args.fail_rate:.0%} of calls fail (429/500, Retry-After {args.retry_after}s on 429), "
          f"{args.truncate_rate:.0%} of answers truncated, seed {args.seed}")
    print(machine_line(), flush=True)
    outcomes = []
    if args.hostile_only:
        plan = []
    for i, num_retries in enumerate(plan):
        label = f"run {i + 1}"
        outcomes.append(run_once(label, num_retries, args, rows, tmp))
        report(outcomes[-1], rows, args.retry_after)

    if outcomes:
        print("\nsummary:")
        print(f"{'run':<6} {'num_retries':>12} {'wall s':>7} {'ok':>5} {'filtered':>9} {'failed':>7} {'429s':>5} "
              f"{'500s':>5} {'truncated':>10} {'checks met':>11}")
    for o in outcomes:
        st = Counter(r.get("status") for r in o.records)
        sent = Counter(e.status for e in o.events if e.status is not None)
        met = sum(ok for _, ok, _ in o.checks)
        print(f"{o.label:<6} {o.num_retries if o.num_retries is not None else 'default'!s:>12} {o.wall:>7.2f} "
              f"{st.get('ok', 0):>5} {st.get('filtered', 0):>9} {st.get('failed', 0):>7} {sent.get(429, 0):>5} "
              f"{sent.get(500, 0):>5} {sum(e.truncated for e in o.events):>10} {f'{met}/{len(o.checks)}':>11}")
    if args.hostile_trials > 0:
        from _hostile import hostile_table

        clean = hostile_table(rows, args.hostile_trials)
        print(f"hostile scenarios: 0 lost, 0 tracebacks, 0 leaks: {verdict(clean)}")
    print(f"\nat the end, {machine_line()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
