"""Review labels that follow the run (a run and its scored twin share them,
keyed by record id and content hash; a changed record's label is stale),
edits in place that `export --reviewed` uses, and a compare folder in
`aidsafe compare`'s own order. A real HTTP client on 127.0.0.1."""

from __future__ import annotations

import json

from click.testing import CliRunner

from aidsafe.cli import main
from aidsafe.tools._compare_manifest import write_compare_manifest
from aidsafe.view._review import read_reviews, sidecar_path
from aidsafe.view._sample import sample_record, write_sample_run
from tests.view.conftest import get, post


def twins(tmp_path, n=10):
    run = write_sample_run(tmp_path / "X.jsonl", n)
    scored = write_sample_run(tmp_path / "X.scored.jsonl", n, scored=True)
    return run, scored


def test_a_label_on_the_scored_file_counts_for_the_run_and_the_reverse(tmp_path, serve):
    run, scored = twins(tmp_path)
    assert sidecar_path(run) == sidecar_path(scored) == tmp_path / "X.review.jsonl"
    base = serve([scored])
    assert post(f"{base}/api/review", {"file": 0, "id": "r000001", "label": "reject", "rev": 0})[0] == 200
    base_run = serve([run])
    _, page = get(f"{base_run}/api/records?file=0&review=reject")
    assert [r["id"] for r in page["rows"]] == ["r000001"]
    assert post(f"{base_run}/api/review", {"file": 0, "id": "r000002", "label": "reject", "rev": 0})[0] == 200
    for given in (run, scored):
        out = tmp_path / f"train-{given.name}.jsonl"
        result = CliRunner().invoke(main, ["export", str(out), "-i", str(given), "--format", "sft", "--reviewed",
                                           "--metadata"])
        assert result.exit_code == 0, result.output
        assert "2 rejected in review" in result.output
        ids = {json.loads(line)["id"] for line in out.read_text().splitlines()}
        assert not ids & {"r000001", "r000002"}


def test_a_label_whose_record_changed_is_stale_not_applied(tmp_path, serve):
    run, _ = twins(tmp_path)
    base = serve([run])
    assert post(f"{base}/api/review", {"file": 0, "id": "r000001", "label": "reject", "rev": 0})[0] == 200
    # a rerun writes another answer for r000001
    records = [sample_record(i) for i in range(10)]
    records[1]["response"] = "A different answer."
    run.write_text("".join(json.dumps(r) + "\n" for r in records))
    base2 = serve([run])
    _, page = get(f"{base2}/api/records?file=0&review=stale")
    assert [r["id"] for r in page["rows"]] == ["r000001"] and page["facets"]["review"]["stale"] == 1
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(main, ["export", str(out), "-i", str(run), "--format", "sft", "--reviewed",
                                       "--metadata"])
    assert result.exit_code == 0, result.output
    assert "1 review label(s) not applied: their record changed" in result.output
    assert "r000001" in {json.loads(line)["id"] for line in out.read_text().splitlines()}


def test_an_edit_is_kept_beside_the_original_and_exported(tmp_path, serve):
    run, scored = twins(tmp_path)
    before = run.read_bytes()
    base = serve([scored])
    _, rec = get(f"{base}/api/record?file=0&id=r000003")
    edit = {"response": "An edited, safer answer.", "cot": ["Edited thought one.", "Edited thought two."]}
    status, saved = post(f"{base}/api/review", {"file": 0, "id": "r000003", "label": "needs-edit", "note": "tone",
                                                "rev": 0, "edit": edit})
    assert status == 200 and saved["review"]["edit"] == edit
    assert saved["review"]["original"] == {"response": rec["record"]["response"], "cot": rec["record"]["cot"]}
    assert run.read_bytes() == before  # the run is never changed
    # a stale tab (it loaded rev 0) is told, not obeyed
    status, conflict = post(f"{base}/api/review", {"file": 0, "id": "r000003", "label": "needs-edit", "rev": 0,
                                                   "edit": {"response": "other", "cot": []}})
    assert status == 409 and conflict["current"]["edit"] == edit
    status, bad = post(f"{base}/api/review", {"file": 0, "id": "r000004", "label": "accept", "edit": edit})
    assert status == 400 and "needs-edit" in bad["error"]
    out = tmp_path / "ds"
    result = CliRunner().invoke(main, ["export", str(out), "-i", str(run), "--format", "hf", "--reviewed",
                                       "--metadata"])
    assert result.exit_code == 0, result.output
    assert "1 record(s) with the text a reviewer edited" in result.output
    card = (out / "README.md").read_text()
    assert "1 edited by a reviewer" in card and "edited: 1" in card
    import datasets

    rows = {r["id"]: r for r in datasets.load_from_disk(str(out))["train"]}
    content = rows["r000003"]["completion"][0]["content"]
    assert "An edited, safer answer." in content and "Edited thought two." in content
    assert read_reviews(sidecar_path(run))["r000003"]["note"] == "tone"


def test_a_compare_folder_is_in_compare_order_with_the_baseline_first(tmp_path, serve):
    folder = tmp_path / "rounds"
    for name in ("aidsafe", "aidsafe-0round", "aidsafe-1round"):
        write_sample_run(folder / f"{name}.jsonl", 4)
    write_compare_manifest(folder, [{"label": name} for name in ("aidsafe-0round", "aidsafe-1round", "aidsafe")])
    base = serve([folder])
    _, files = get(f"{base}/api/files")
    assert [f["label"] for f in files["files"]] == ["aidsafe-0round", "aidsafe-1round", "aidsafe"]
    _, summary = get(f"{base}/api/summary?files=0,1,2")
    assert [f["label"] for f in summary["files"]][0] == "aidsafe-0round"
