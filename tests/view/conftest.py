"""Fixtures for ``aidsafe view``: a server on 127.0.0.1 over sample runs."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from aidsafe.view._sample import write_sample_run
from aidsafe.view._server import make_server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (the browser fixture takes a
    screenshot when the test failed)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def serve():
    """``serve(paths) -> base URL``: a live viewer, shut down after the test."""
    servers = []

    def start(paths):
        server = make_server(paths, port=0)
        server.serve_in_thread()
        servers.append(server)
        return server.url.rstrip("/")

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, dict]:
    """(status, JSON body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=30) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def page_token(url: str) -> str:
    """The session token in the viewer's page (as the page's own script reads it)."""
    base = url.split("/api/")[0]
    with urllib.request.urlopen(base + "/", timeout=30) as res:
        return re.search(r'name="aidsafe-token" content="([^"]+)"', res.read().decode()).group(1)


def post(url: str, body: dict) -> tuple[int, dict]:
    """(status, JSON body) of a JSON POST, as the viewer's page sends it."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-Aidsafe-Token": page_token(url)})
    try:
        with urllib.request.urlopen(request, timeout=30) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def runs(tmp_path):
    """A small run, its scored twin and a DPO run."""
    return {"run": write_sample_run(tmp_path / "out.jsonl", 40),
            "scored": write_sample_run(tmp_path / "out2.scored.jsonl", 40, scored=True, seed=1),
            "dpo": write_sample_run(tmp_path / "dpo.jsonl", 12, dpo=True)}
