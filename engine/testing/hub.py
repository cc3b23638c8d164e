"""A local fake of the Hugging Face Hub's HTTP API, enough for
``HfApi.create_repo`` and ``HfApi.upload_folder`` (small files, which the
Hub takes inline in the commit) and the card check of ``/api/validate-yaml``.
It listens on 127.0.0.1 only, records every request, and keeps the repos it
was given in memory. Use it to test a pipeline that ends in
``aidsafe export --push-to-hub`` without a network or a real token::

    from aidsafe.testing import FakeHub

    with FakeHub(token="hf_test") as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_test"}
        # run `aidsafe export ... --push-to-hub me/data` with env, then:
        assert "data/train-00000-of-00001.parquet" in hub.repos["me/data"].files

(``huggingface_hub`` reads ``HF_ENDPOINT`` when it is imported: set it in the
environment of a new process, or patch ``huggingface_hub.constants.ENDPOINT``.)"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FakeRepo:
    """One dataset repo: its visibility and files (path -> bytes)."""

    private: bool
    files: dict = field(default_factory=dict)
    commits: list = field(default_factory=list)  # commit messages


class FakeHub:
    """``with FakeHub(token="hf_x") as hub:`` serves at ``hub.endpoint``;
    ``hub.repos`` holds what was pushed, ``hub.requests`` (method, path,
    Authorization header) what was asked."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.validated: list[str] = []  # README.md contents sent to /api/validate-yaml
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                hub.requests.append(("GET", self.path, self.headers.get("Authorization")))
                self._reply(404, {"error": f"fake hub: no GET {self.path}"})

            def do_POST(self):
                auth = self.headers.get("Authorization")
                hub.requests.append(("POST", self.path, auth))
                body = self._body()
                if auth != f"Bearer {hub.token}":
                    return self._reply(401, {"error": "Invalid credentials in Authorization header"})
                if self.path == "/api/validate-yaml":
                    return self._validate(json.loads(body))
                if self.path == "/api/repos/create":
                    payload = json.loads(body)
                    repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") \
                        else payload["name"]
                    if payload.get("type") != "dataset":
                        return self._reply(400, {"error": "fake hub: datasets only"})
                    if repo_id in hub.repos:
                        return self._reply(409, {"error": "You already created this dataset repo",
                                                 "url": f"{hub.endpoint}/datasets/{repo_id}"})
                    hub.repos[repo_id] = FakeRepo(private=payload.get("private") is True or payload.get("visibility") == "private")
                    return self._reply(200, {"url": f"{hub.endpoint}/datasets/{repo_id}", "name": repo_id})
                match = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(preupload|commit)/main", self.path)
                if not match or match.group(1) not in hub.repos:
                    return self._reply(404, {"error": f"fake hub: no POST {self.path}"})
                repo = hub.repos[match.group(1)]
                if match.group(2) == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "header":
                        repo.commits.append(item["value"]["summary"])
                    elif item["key"] == "file":
                        repo.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    else:
                        return self._reply(400, {"error": f"fake hub: unexpected commit item {item['key']}"})
                oid = f"{len(repo.commits):040x}"
                return self._reply(200, {"commitUrl": f"{hub.endpoint}/datasets/{match.group(1)}/commit/{oid}",
                                         "commitOid": oid, "pullRequestUrl": None})

            def _validate(self, payload: dict) -> None:
                """Like the Hub: the card's YAML header must parse and say what the Hub needs."""
                import yaml

                content = payload.get("content") or ""
                hub.validated.append(content)
                parts = content.split("---\n")
                try:
                    meta = yaml.safe_load(parts[1]) if content.startswith("---\n") and len(parts) > 2 else None
                except yaml.YAMLError as exc:
                    return self._reply(400, {"errors": [{"message": f"YAML: {exc}"}]})
                errors = [{"message": f"missing {key}"} for key in ("license", "configs", "dataset_info")
                          if not isinstance(meta, dict) or key not in meta]
                return self._reply(400 if errors else 200, {"errors": errors, "warnings": []})

        return Handler
