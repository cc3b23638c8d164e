"""Secrets out of everything the engine writes or prints: the one redaction
helper, used for failed records' errors, log lines, CLI errors and
tracebacks.

A provider may echo the key it was sent ("Incorrect API key provided:
sk-..."), and that message ends up in ``error.message``, in the traceback, in
a log line. :func:`redact` replaces, in any text:

* the value of every environment variable a model reads its key from
  (``api_key_env``, registered with :func:`register_secret_env` when the
  model is built), and of any variable whose name says it holds a secret
  (``*API_KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``);
* anything shaped like a key: ``sk-...`` (OpenAI, Anthropic), ``Bearer ...``,
  ``hf_...``, ``ghp_...``, ``AKIA...``, ``xox?-...``, ``AIza...``, and
  ``api_key=...`` / ``"api_key": "..."`` pairs;
* the user and password of a URL (``http://user:PASS@host/v1`` becomes
  ``http://[redacted]@host/v1``; :func:`strip_userinfo` drops them).

Model answers are data, so only :func:`redact_values` runs on them (the
configured secret values, no shapes): a key a server echoes in a 200 answer
never reaches the cache or the output.

Values shorter than :data:`MIN_SECRET` characters are not replaced (they
would mangle ordinary words); such a key is no secret anyway.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from typing import Any

__all__ = ["REDACTED", "install_log_redaction", "redact", "redact_error", "redact_values", "register_secret_env",
           "register_secret_value", "strip_userinfo"]

REDACTED = "[redacted]"
MIN_SECRET = 6

_ENV_NAMES: set[str] = set()
_VALUES: set[str] = set()
_LOCK = threading.Lock()
# scheme://user[:password]@ : the userinfo goes, the host stays.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@?#]+)@")
_SECRET_NAME = re.compile(r"API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)
_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])(?:sk|rk|pk)-[A-Za-z0-9_\-]{12,}"        # sk-..., sk-proj-..., sk-ant-...
    r"|(?<![A-Za-z0-9])(?:hf|gh[pousr]|github_pat|glpat)_[A-Za-z0-9_]{16,}"
    r"|(?<![A-Za-z0-9])AKIA[0-9A-Z]{16}(?![A-Za-z0-9])"
    r"|(?<![A-Za-z0-9])xox[abprs]-[A-Za-z0-9\-]{10,}"
    r"|(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{30,}"
)
# The name and separator stay, the value goes: Bearer <x>, api_key=<x>, "api_key": "<x>".
_PAIRS = re.compile(
    r"(?P<name>\bBearer\s+|\b(?:x-)?api[_-]?key\b[\"']?\s*[:=]\s*[\"']?|\bauthorization\b[\"']?\s*[:=]\s*[\"']?"
    r"(?:Bearer\s+)?)(?P<value>(?!\[redacted\]|Bearer\b)[^\s\"',;}\]]{4,})",
    re.IGNORECASE,
)


def register_secret_env(name: str | None) -> None:
    """Redact the value of environment variable ``name`` (a model's
    ``api_key_env``) from now on; its value is read at redaction time."""
    if name:
        with _LOCK:
            _ENV_NAMES.add(name)


def register_secret_value(value: str | None) -> None:
    """Redact ``value`` itself from now on (a password in an ``api_base``)."""
    if value and len(value) >= MIN_SECRET:
        with _LOCK:
            _VALUES.add(value)


def strip_userinfo(url: str | None) -> str | None:
    """``url`` without its ``user:password@`` part (registering the password
    as a secret), for what is stored or printed: identities, provenance."""
    if not isinstance(url, str) or "@" not in url:
        return url
    for match in _USERINFO.finditer(url):
        user, _, password = match.group("userinfo").partition(":")
        register_secret_value(password)
    return _USERINFO.sub(lambda m: m.group("scheme"), url)


def _secret_values() -> list[str]:
    with _LOCK:
        names = set(_ENV_NAMES)
        fixed = set(_VALUES)
    values = {os.environ.get(n, "") for n in names} | fixed
    values |= {v for n, v in os.environ.items() if _SECRET_NAME.search(n)}
    # Longest first: a key that contains another is replaced whole.
    return sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True)


def redact(text: Any) -> Any:
    """``text`` with every secret replaced by ``[redacted]``; anything that is
    not a string comes back unchanged."""
    if not isinstance(text, str) or not text:
        return text
    for value in _secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    text = _PAIRS.sub(lambda m: m.group("name") + REDACTED, text)
    if "@" in text:
        text = _USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
    return _SHAPES.sub(REDACTED, text)


def redact_values(value: Any) -> Any:
    """``value`` (text, or lists and dicts of it, such as a model's answer)
    with every configured secret value replaced; shapes are left alone, as
    an answer may rightly show what a key looks like."""
    secrets = _secret_values()
    if not secrets:
        return value

    def walk(item):
        if isinstance(item, str):
            for secret in secrets:
                if secret in item:
                    item = item.replace(secret, REDACTED)
            return item
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)


def redact_error(error: dict | None) -> dict | None:
    """A record's ``error`` with every string value redacted."""
    if not error:
        return error
    return {k: redact(v) for k, v in error.items()}


class _RedactingFactory:
    """A log record factory that redacts the message (and the formatted
    traceback) of every record, whatever logger or handler it goes to."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, *args, **kwargs):
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler's own error path
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record


def install_log_redaction() -> None:
    """Redact every log record and uncaught traceback of this process. For
    processes aidsafe owns (the CLI, Ray workers): it changes global logging
    state, so importing the package never calls it."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(factory))
    if not getattr(sys.excepthook, "_aidsafe_redacts", False):
        sys.excepthook = _redacting_excepthook


def _redacting_excepthook(kind, value, tb):
    import traceback

    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


_redacting_excepthook._aidsafe_redacts = True  # type: ignore[attr-defined]
