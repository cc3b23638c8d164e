"""``aidsafe export --format hf --push-to-hub ORG/NAME``: upload an exported
dataset folder to the Hugging Face Hub through ``huggingface_hub``.

The token comes from ``HF_TOKEN`` (or the older ``HUGGING_FACE_HUB_TOKEN``),
else from the login ``hf auth login`` stored (``huggingface_hub.get_token()``);
it is passed to each call, never written anywhere by aidsafe. ``HF_ENDPOINT``
points the client at another Hub (:class:`aidsafe.testing.FakeHub` is a local
fake for tests and CI). Only what ``load_dataset`` reads on the Hub is uploaded: the
card (``README.md``) and the parquet shards under ``data/``; the arrow
copies for ``load_from_disk`` stay local.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from aidsafe._util.errors import UserError

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
UPLOADED = ["README.md", "data/*"]


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` or a :class:`UserError` showing the expected form."""
    if not _REPO_ID.match(repo_id or "") or ".." in repo_id or repo_id.endswith((".", "-")):
        raise UserError(f"--push-to-hub {repo_id!r}: expected ORG/NAME (letters, digits, '-', '_', '.'), "
                        "e.g. --push-to-hub my-org/aidsafe-sft")
    return repo_id


def hub_token() -> str:
    """The Hub token: ``HF_TOKEN`` (or the older ``HUGGING_FACE_HUB_TOKEN``)
    from the environment, else the one ``hf auth login`` stored (read by
    ``huggingface_hub.get_token()``); a :class:`UserError` says how to set one."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        try:
            from huggingface_hub import get_token
        except ImportError:
            get_token = None
        token = get_token() if get_token is not None else None
    if not token:
        raise UserError("--push-to-hub needs a Hugging Face write token: `hf auth login`, or export HF_TOKEN=hf_... "
                        "(aidsafe reads it and never stores it)")
    return token


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, message: str | None = None) -> str:
    """Create the dataset repo ``repo_id`` if needed (``private`` applies to a
    new repo) and upload the card and parquet shards of ``folder`` as one
    commit. Returns the dataset's URL."""
    check_repo_id(repo_id)
    token = hub_token()
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        raise UserError("--push-to-hub needs huggingface_hub; install the export extra: "
                        "pip install 'aidsafe[export]'") from None
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=True if private else None, exist_ok=True,
                              token=token)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset", token=token,
                          allow_patterns=UPLOADED, commit_message=message or "aidsafe export")
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        hint = {401: "the token was refused: check HF_TOKEN (or log in again: `hf auth login`)", 403: "the token may not write to "
                f"{repo_id.split('/')[0]}: use a write token of a member of that organisation"}.get(status, "")
        raise UserError(f"--push-to-hub {repo_id}: the Hub answered {str(exc).splitlines()[0]}"
                        + (f"; {hint}" if hint else "")) from None
    except (OSError, ValueError) as exc:  # offline mode, connection refused, bad endpoint
        raise UserError(f"--push-to-hub {repo_id}: could not reach the Hub ({type(exc).__name__}: {exc}); "
                        "check the network, HF_ENDPOINT and that HF_HUB_OFFLINE is not set") from None
    return str(url)
