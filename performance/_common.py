"""Helpers every benchmark script shares; scripts import shared code from here
only, never from one another.

Light by design (no DSPy or engine import at module level): ``startup_bench``
and the model benches import it too. The hand-written DSPy reference pipeline
(``HandWritten``, ``run_handwritten``) lives in ``_handwritten.py`` and is
loaded, with DSPy, the first time a script imports one of those names from here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
XSTEST = ROOT / "data" / "xstest" / "xstest_prompts.csv"
# The frozen 4-stage AIDSAFE recipe the mock-server benches run.
RECIPE = Path(__file__).resolve().parent / "recipes" / "aidsafe-4stage.yaml"


def machine_line() -> str:
    """CPU count and load average: other work on a small machine skews every
    figure, so the output says how busy the machine was."""
    try:
        load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return f"machine: {os.cpu_count()} CPU(s), load average (1/5/15 min) {load}"


def verdict(ok: bool) -> str:
    """How a target line reads: ``MET`` or ``MISSED``."""
    return "MET" if ok else "MISSED"


def target_line(ok: bool, text: str) -> str:
    """One indented target line: ``  [   met] text`` or ``  [MISSED] text``."""
    return f"  [{'   met' if ok else 'MISSED'}] {text}"


def load_prompts(n: int, source: Path | None) -> list[dict]:
    """``n`` input rows: XSTest prompts first, then numbered variants of them
    (every prompt stays distinct)."""
    base: list[dict] = []
    if source is not None and source.is_file():
        with open(source, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("prompt"):
                    base.append({"id": f"xstest-{row.get('id') or len(base) + 1}", "prompt": row["prompt"]})
    if not base:
        base = [{"id": f"gen-{i}", "prompt": f"How do I safely dispose of old batteries, case {i}?"} for i in range(1, 51)]
    rows = []
    for i in range(n):
        row = base[i % len(base)]
        cycle = i // len(base)
        rows.append(dict(row) if cycle == 0 else
                    {"id": f"{row['id']}-v{cycle}", "prompt": f"{row['prompt']} (variant {cycle})"})
    return rows


def write_inputs(path: Path, rows: list[dict]) -> None:
    """``rows`` as a JSONL input file."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_recipe(path: Path, url: str, workers: int | None = None, source: Path = RECIPE,
                 refiner_suffix: str = "", **model_keys) -> dict:
    """``source`` (default the 4-stage recipe) with ``models.default`` pointed
    at the mock server (``openai/mock-model``; ``concurrency: workers`` when
    given, and any ``model_keys`` such as ``num_retries``), its prompts folder
    and demo pools made absolute (the copy is written elsewhere), the refiner's
    instructions extended by ``refiner_suffix`` when given; returns the recipe
    data."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    old = data["models"]["default"]
    data["models"]["default"] = {
        "model": "openai/mock-model", "api_base": url, **({"concurrency": workers} if workers else {}),
        **{k: old[k] for k in ("temperature", "max_tokens") if k in old}, **model_keys,
    }
    # Paths in the recipe are relative to its folder; the copy lives elsewhere.
    if isinstance(data.get("prompts"), str):
        data["prompts"] = str((source.parent / data["prompts"]).resolve())
    for agent in (data.get("agents") or {}).values():
        demos = agent.get("demos") if isinstance(agent, dict) else None
        if isinstance(demos, dict) and isinstance(demos.get("pool"), str):
            demos["pool"] = str((source.parent / demos["pool"]).resolve())
    if refiner_suffix:
        refiner = data["agents"]["refiner"]
        refiner["instructions"] = refiner["instructions"].rstrip() + "\n" + refiner_suffix + "\n"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return data


def body_digest(body: dict) -> str:
    """What a request asks the model: messages and sampling parameters. The
    ``seed`` is left out: the engine gives every remote call a seed derived
    from its call key (so samples are reproducible), which DSPy alone does
    not send; everything else must match."""
    material = {k: v for k, v in body.items() if k not in ("model", "stream", "seed")}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()


# ------------------------------------------------ mock server in a child process

def _serve(conn, latency: float) -> None:
    """Child process: serve until told to stop, then report the counters."""
    from aidsafe.testing.mock_server import MockOpenAIServer

    with MockOpenAIServer(latency=latency) as server:
        conn.send(server.url)
        while True:
            message = conn.recv()
            if message == "stats":
                conn.send((server.calls, server.requests, dict(server.failures)))
            elif message == "stop":
                break


class ServerProcess:
    """A MockOpenAIServer running in a child process (same API subset), so its
    CPU time neither counts as nor competes with the engine's."""

    def __init__(self, latency: float):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, latency), daemon=True)

    def __enter__(self):
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("mock server process did not start within 60 s")
        self.url = self._conn.recv()
        return self

    def __exit__(self, *exc) -> None:
        self._conn.send("stop")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()

    @property
    def calls(self) -> int:
        """Completions the server has answered so far."""
        self._conn.send("stats")
        return self._conn.recv()[0]


# ------------------------------------------- the hand-written DSPy reference

_HANDWRITTEN = ("HandWritten", "StableFirstJSONAdapter", "run_handwritten")


def __getattr__(name: str):
    # PEP 562: the DSPy reference pipeline (and DSPy) load on first use.
    if name in _HANDWRITTEN:
        import _handwritten

        return getattr(_handwritten, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
