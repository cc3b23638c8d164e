"""Issue 29, item 4: the viewer accepts writes only from its own page. A
foreign Origin, a cross-site fetch, a missing session token or a text/plain
body cannot save a review (which `export --reviewed` would obey); a foreign
Host (DNS rebinding) gets nothing; a bad Content-Length is a 400, not a
traceback and a dropped connection."""

from __future__ import annotations

import http.client
import json

import pytest

from aidsafe.view._review import sidecar_path
from tests.view.conftest import get, page_token, post


def raw(base: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
    host, port = base.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest(method, path, skip_host="Host" in (headers or {}))
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            connection.putheader(key, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


REVIEW = json.dumps({"file": 0, "id": "r000001", "label": "reject", "note": "evil", "rev": 0}).encode()


@pytest.mark.parametrize("case, headers, status", [
    ("foreign origin, text/plain, no token", {"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403),
    ("foreign origin with the token", {"Origin": "http://evil.example", "Content-Type": "application/json",
                                       "X-Aidsafe-Token": "TOKEN"}, 403),
    ("cross-site fetch with the token", {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json",
                                         "X-Aidsafe-Token": "TOKEN"}, 403),
    ("no token", {"Content-Type": "application/json"}, 403),
    ("wrong token", {"Content-Type": "application/json", "X-Aidsafe-Token": "guess"}, 403),
    ("text/plain with the token", {"Content-Type": "text/plain", "X-Aidsafe-Token": "TOKEN"}, 415),
])
def test_writes_from_anything_but_the_viewers_page_are_refused(runs, serve, case, headers, status):
    base = serve([runs["run"]])
    token = page_token(base)
    headers = {k: (token if v == "TOKEN" else v) for k, v in headers.items()}
    got, answer = raw(base, "POST", "/api/review", REVIEW, headers)
    assert got == status, (case, answer)
    assert not sidecar_path(runs["run"]).exists()


def test_the_viewers_own_page_can_write(runs, serve):
    base = serve([runs["run"]])
    port = base.rsplit(":", 1)[1]
    status, _ = raw(base, "POST", "/api/review", REVIEW,
                    {"Origin": f"http://localhost:{port}", "Sec-Fetch-Site": "same-origin",
                     "Content-Type": "application/json", "X-Aidsafe-Token": page_token(base)})
    assert status == 200
    assert post(f"{base}/api/review", {"file": 0, "id": "r000002", "label": "accept", "rev": 0})[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost.evil.example:{port}"])
def test_a_foreign_host_gets_nothing(runs, serve, host):
    base = serve([runs["run"]])
    port = base.rsplit(":", 1)[1]
    header = {"Host": host.format(port=port)}
    for method, path in (("GET", "/"), ("GET", "/api/records?file=0"), ("POST", "/api/review")):
        status, answer = raw(base, method, path, REVIEW if method == "POST" else b"", header)
        assert status == 403 and "refused Host" in answer["error"], (method, path)
    assert get(f"{base}/api/files")[0] == 200  # its own address still works


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_a_bad_content_length_is_a_400(runs, serve, length, capsys):
    base = serve([runs["run"]])
    status, answer = raw(base, "POST", "/api/review", b"",
                         {"Content-Length": length, "Content-Type": "application/json",
                          "X-Aidsafe-Token": page_token(base)})
    assert status == 400 and "Content-Length" in answer["error"]
    assert "Traceback" not in capsys.readouterr().err
