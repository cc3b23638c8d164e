"""The one redaction helper (issue 14, item 4)."""

from __future__ import annotations

import logging

import pytest

import aidsafe
from aidsafe._util.redact import REDACTED, install_log_redaction, redact, redact_error, register_secret_env

from ..conftest import MINI, options, read_jsonl


@pytest.mark.parametrize("text, expected", [
    ("Incorrect API key provided: sk-proj-abcdefghijklmnop1234. You can find",
     f"Incorrect API key provided: {REDACTED}. You can find"),
    ('headers={"Authorization": "Bearer abc.def-ghi"}', f'headers={{"Authorization": "Bearer {REDACTED}"}}'),
    ("api_key='sk-1234567890abcdefg'", f"api_key='{REDACTED}'"),
    ("token hf_abcdefghijklmnopqrstuv and AKIAABCDEFGHIJKLMNOP", f"token {REDACTED} and {REDACTED}"),
    ("risk-assessment-framework-guideline and sk-short", "risk-assessment-framework-guideline and sk-short"),
    (f"Bearer {REDACTED} already", f"Bearer {REDACTED} already"),
])
def test_key_shapes_are_redacted_and_ordinary_text_kept(text, expected):
    assert redact(text) == expected
    assert redact(redact(text)) == expected


def test_values_of_key_variables_are_redacted(monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_CRED", "plain-looking-value-42")  # name does not say "key"
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "another-plain-value-7")  # name says token
    assert "plain-looking-value-42" in redact("x plain-looking-value-42 y")  # not registered yet
    register_secret_env("MY_PROVIDER_CRED")
    assert redact("x plain-looking-value-42 y another-plain-value-7") == f"x {REDACTED} y {REDACTED}"
    assert redact_error({"message": "plain-looking-value-42", "stage": None}) == {"message": REDACTED, "stage": None}
    assert redact(None) is None and redact(3) == 3


def test_log_records_are_redacted_once_installed(caplog, monkeypatch):
    monkeypatch.setenv("ZZ_API_KEY", "abcdef-logged-secret")
    old = logging.getLogRecordFactory()
    try:
        install_log_redaction()
        with caplog.at_level(logging.WARNING):
            logging.getLogger("provider").warning("denied for %s", "abcdef-logged-secret")
    finally:
        logging.setLogRecordFactory(old)
    assert caplog.records[-1].getMessage() == f"denied for {REDACTED}"


def test_a_long_error_is_redacted_before_it_is_cut(fake, recipe_file, prompts, tmp_path, monkeypatch):
    """The record keeps the first 2000 characters of a message: a key across
    that boundary must not leave its first half in the record."""
    key = "zz9-cut-in-half-credential-value-0123456789"
    monkeypatch.setenv("CUT_CRED", key)
    register_secret_env("CUT_CRED")

    def thinker(call):
        raise RuntimeError("x" * 1980 + key)

    fake.rules = [("THINKER", thinker)]
    aidsafe.run(recipe_file(MINI), prompts(["one"]), tmp_path / "o.jsonl", options(tmp_path / "c"))
    error = read_jsonl(tmp_path / "o.jsonl")[0]["error"]
    assert key[:12] not in error["message"] and key[:12] not in error["traceback"]
    assert "x" * 1000 in error["message"]  # the rest of the message is kept
