"""``aidsafe view`` at the HTTP level: a real client on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
import urllib.request

import pytest
from click.testing import CliRunner

from aidsafe.cli import main
from aidsafe.view._review import read_reviews, sidecar_path
from aidsafe.view._sample import write_sample_run
from aidsafe.view._server import make_server
from tests.view.conftest import get, post


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    return write_sample_run(tmp_path_factory.mktemp("big") / "big.jsonl", 100_000, scored=True)


def test_first_page_of_a_100k_record_file_comes_back_before_the_index_is_done(big_run, serve):
    base = serve([big_run])
    status, page = get(f"{base}/api/records?file=0&limit=50")
    assert status == 200 and [r["id"] for r in page["rows"]][:2] == ["r000000", "r000001"]
    assert len(page["rows"]) == 50
    # the work, not the clock: the first page did not wait for the whole file to be indexed
    assert not page["complete"] and page["indexed"] < 100_000, (page["complete"], page["indexed"])
    # the last page, once indexed: every record is there, none loaded into the page
    status, last = get(f"{base}/api/records?file=0&status=ok&sort=score.relevance&desc=1&offset=79990&limit=50")
    assert status == 200 and last["total"] == 80_000 and len(last["rows"]) == 10
    assert last["facets"]["status"] == {"failed": 10_000, "filtered": 10_000, "ok": 80_000}
    status, rec = get(f"{base}/api/record?file=0&id=r099999")
    assert rec["record"]["index"] == 99_999 and rec["prev"] == "r099998" and rec["next"] is None


def test_filter_sort_search_and_pagination(runs, serve):
    base = serve([runs["run"], runs["scored"]])
    _, page = get(f"{base}/api/records?file=0&status=failed")
    assert {r["status"] for r in page["rows"]} == {"failed"} and page["total"] == 4
    _, page = get(f"{base}/api/records?file=0&refusal=full_refusal&limit=3&offset=3")
    refusals = sum(1 for i in range(40) if i % 8 in (3, 7) and i % 10 not in (7, 9))  # phishing, jailbreak
    assert page["total"] == refusals and len(page["rows"]) == 3
    _, page = get(f"{base}/api/records?file=0&q=" + urllib.parse.quote("phishing email"))
    assert page["total"] and all("phishing" in r["prompt"] for r in page["rows"])
    _, page = get(f"{base}/api/records?file=1&sort=score.coherence&desc=1")
    scores = [r["scores"]["coherence"] for r in page["rows"] if r["scores"]["coherence"] is not None]
    assert scores == sorted(scores, reverse=True)
    status, page = get(f"{base}/api/records?file=1&sort=nonsense")
    assert status == 400 and "cannot filter or sort by 'nonsense'" in page["error"]


def test_record_page_data_compare_and_summary(runs, serve):
    base = serve([runs["run"], runs["scored"], runs["dpo"]])
    _, rec = get(f"{base}/api/record?file=0&id=r000003")
    assert rec["record"]["deliberation"]["log"][0]["action"] == "revise"
    assert {"file": 1, "label": "out2.scored.jsonl"} in rec["also_in"]
    _, dpo = get(f"{base}/api/record?file=2&id=r000001")
    assert dpo["record"]["preference"]["rejected"]["belief"] and dpo["file"]["kind"] == "dpo"
    _, cmp = get(f"{base}/api/compare?files=0,1&only=diff")
    assert cmp["shared"] == 40 and all(r["differs"] for r in cmp["rows"])
    _, summary = get(f"{base}/api/summary?files=0,1")
    metric = summary["metrics"][0]
    assert metric["cells"][0]["n"] == 0 and metric["cells"][1]["n"] == 32
    assert metric["cells"][1]["low"] <= metric["cells"][1]["mean"] <= metric["cells"][1]["high"]


def test_only_the_given_files_are_served(runs, serve, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"id": "x", "status": "ok"}\n')
    base = serve([runs["run"]])
    host, port = base.removeprefix("http://").split(":")
    for path in ("/static/../../secret.jsonl", "/api/../secret.jsonl", "/static/..%2f..%2fsecret.jsonl"):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path)  # http.client sends the path as is (no normalising)
        res = conn.getresponse()
        body = json.loads(res.read())
        assert res.status == 400 and "refused path" in body["error"], path
    for path in ("/secret.jsonl", "/static/secret.jsonl", f"/static/{secret}"):
        status, body = get(base + path)
        assert status == 404 and set(body) == {"error"} and '"x"' not in json.dumps(body), path
    for key in ("1", "-1", "../secret.jsonl", str(secret), ""):
        status, body = get(f"{base}/api/records?file={urllib.parse.quote(key)}")
        assert status == 400 and "only the files given" in body["error"], key
    with urllib.request.urlopen(base + "/static/app.js", timeout=10) as res:
        assert res.status == 200 and b"aidsafe view" in res.read()


def test_the_server_listens_on_loopback_only(runs):
    server = make_server([runs["run"]], port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


@pytest.mark.parametrize("content, expected", [
    ("not json at all\n", "bad.jsonl:1: not valid JSON"),
    ('{"id": "1", "status": "ok"}\n[1, 2]\n', "bad.jsonl:2: expected a JSON object"),
    (b"\xff\xfe garbage\n", "bad.jsonl:1: not valid JSON"),
    ("", "holds no records"),
])
def test_a_bad_file_gives_one_clear_error_not_a_traceback(tmp_path, serve, content, expected):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    base = serve([bad])
    status, page = get(f"{base}/api/records?file=0&status=ok")
    assert status == 200 and expected in page["file"]["error"]
    assert "Traceback" not in json.dumps(page)
    _, files = get(f"{base}/api/files")
    assert expected in files["files"][0]["error"]


@pytest.mark.parametrize("args, expected", [
    (["missing.jsonl"], "'missing.jsonl' not found"),
    (["empty_dir"], "a folder without .jsonl runs"),
    (["out.review.jsonl"], "is a review sidecar"),
])
def test_cli_bad_paths_are_user_errors(tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "out.review.jsonl").write_text("")
    result = CliRunner().invoke(main, ["view", *args, "--port", "0"])
    assert result.exit_code == 1 and expected in result.output and "Traceback" not in result.output


def test_a_compare_folder_serves_its_variants_scored_preferred(tmp_path, serve):
    folder = tmp_path / "rounds"
    write_sample_run(folder / "a.jsonl", 5)
    write_sample_run(folder / "a.scored.jsonl", 5, scored=True)
    write_sample_run(folder / "b.jsonl", 5, seed=2)
    sidecar_path(folder / "b.jsonl").write_text("")
    base = serve([folder])
    _, files = get(f"{base}/api/files")
    assert [(f["label"], f["name"], f["group"]) for f in files["files"]] == [
        ("a", "a.scored.jsonl", "rounds"), ("b", "b.jsonl", "rounds")]


def test_review_sidecar_atomic_conflicts_and_concurrent_writers(runs, serve):
    base = serve([runs["run"]])
    status, saved = post(f"{base}/api/review", {"file": 0, "id": "r000001", "label": "reject", "note": "n", "rev": 0})
    assert status == 200 and saved["review"]["rev"] == 1
    # a second tab that loaded the page before the save is told, not overwritten
    status, conflict = post(f"{base}/api/review", {"file": 0, "id": "r000001", "label": "accept", "rev": 0})
    assert status == 409 and conflict["current"]["label"] == "reject"
    status, bad = post(f"{base}/api/review", {"file": 0, "id": "r000001", "label": "maybe"})
    assert status == 400 and "accept, reject, needs-edit" in bad["error"]
    status, bad = post(f"{base}/api/review", {"file": 0, "id": "nope", "label": "accept"})
    assert status == 400 and "no record with id 'nope'" in bad["error"]

    # many tabs at once, each on its own record: no label is lost
    ids = [f"r{i:06d}" for i in range(2, 32)]
    threads = [threading.Thread(target=post, args=(f"{base}/api/review", {"file": 0, "id": rid, "label": "accept"}))
               for rid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reviews = read_reviews(sidecar_path(runs["run"]))
    assert set(ids) | {"r000001"} == set(reviews)
    assert not [p for p in runs["run"].parent.iterdir() if p.name.startswith(".")]  # no temporary left
    _, page = get(f"{base}/api/records?file=0&review=reject")
    assert [r["id"] for r in page["rows"]] == ["r000001"]
    status, cleared = post(f"{base}/api/review", {"file": 0, "id": "r000001", "label": None, "rev": 1})
    assert status == 200 and cleared["review"] is None
    assert "r000001" not in read_reviews(sidecar_path(runs["run"]))


def test_export_reviewed_leaves_out_rejected_records(runs, tmp_path):
    from aidsafe.view._review import Review, ReviewStore

    store = ReviewStore(runs["run"])
    store.save(Review("r000000", "reject", "wrong policy"))
    store.save(Review("r000001", "needs-edit"))
    store.save(Review("r000002", "accept"))
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(main, ["export", str(out), "-i", str(runs["run"]), "--format", "sft", "--reviewed",
                                       "--metadata"])
    assert result.exit_code == 0, result.output
    assert "1 rejected in review" in result.output
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert "r000000" not in ids and "r000001" in ids and len(ids) == 31
    result = CliRunner().invoke(main, ["export", str(out), "-i", str(runs["dpo"]), "--format", "sft", "--reviewed"])
    assert result.exit_code == 1 and "no review file" in result.output
