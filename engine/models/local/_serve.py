"""The shared HTTP server: :func:`serve` exposes a local model over llama.cpp's
OpenAI-compatible API so several processes can share one loaded model.

llama.cpp's own listener reads and tokenizes any body it is sent and queues
without bound, so it stays on an ephemeral loopback port behind a random key
(as in :class:`LlamaCppEngine`), and clients talk to :class:`ServeFront`: it
binds the port before the model loads (a port in use fails at once), answers
413 to a body over the size limit from its Content-Length alone, and 503
with Retry-After when every slot is busy and the waiting room is full.

Like vLLM, it serves one model by name: a request whose ``model`` is not
that name (or the reference it was started with) gets 404 naming the
loaded model, and ``GET /v1/models`` lists that name. Embeddings are not
served (501 with what to use instead)."""

from __future__ import annotations

import contextlib
import errno
import hmac
import http.client
import json
import secrets
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from aidsafe._util.errors import ModelError
from aidsafe.models.local._engine import PROMPT_CACHE_MIB, _make_params, _start_server
from aidsafe.models.local._special import SpecialTokens, special_tokens
from aidsafe.models.local._threads import choose_threads
from aidsafe.models.local._weights import resolve_local

__all__ = ["MAX_BODY_BYTES", "MAX_WAITING", "ServeFront", "serve"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

#: Largest request body accepted (4 MiB: far above a full context of text).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Requests that may wait for a slot; past slots + this, the server answers 503.
MAX_WAITING = 16
#: Seconds a client is told to wait after a 503.
RETRY_AFTER = 1
# The paths whose JSON body names a model (the model check applies to them).
_MODEL_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/chat/completions",
                          "/completions", "/embeddings"})
EMBEDDINGS_HINT = ("aidsafe serve does not serve embeddings (llama.cpp runs its embedding mode as a separate "
                   "model). For the screen's precedent search, embed in the run itself: a recipe's "
                   "`models: {embed: {model: local:default}}` (llama.cpp's embedding mode, in-process), "
                   "`embedder: lexical` (no model), or `--model embed=openai/NAME --api-base URL` for an "
                   "OpenAI-compatible embeddings server such as `vllm serve NAME --task embed`")
#: Seconds a client has to send a request's headers and whole body (a
#: stalled or trickling upload is answered 408 and never holds a slot).
READ_TIMEOUT = 30.0
# Hop-by-hop headers are the connection's own, never forwarded.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                         "trailer", "transfer-encoding", "upgrade", "content-length", "server", "date"})


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Past the slots and the waiting room the front answers 503 itself; the
    # socketserver default backlog of 5 would reset those clients instead.
    request_queue_size = 128
    front: "ServeFront"

    def handle_error(self, request, client_address):
        pass  # a client that hangs up mid-answer is not the server's error


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each socket read (the request line and headers, an idle keep-alive
    # connection) waits at most this long; the body has a whole-request deadline.
    timeout = READ_TIMEOUT
    server_version = "aidsafe-serve"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass

    def _dispatch(self):
        self.server.front._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _dispatch

    def error(self, status: int, message: str, headers: dict | None = None, close: bool = False,
              error_type: str | None = None) -> None:
        kind = error_type or ("invalid_request_error" if status < 500 else "server_error")
        data = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
        if close:
            self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


class ServeFront:
    """The HTTP front of ``aidsafe serve``: bounds what reaches the model.

    Binds ``host:port`` when built (``ModelError`` if it cannot), so a port
    in use fails before anything loads. :meth:`start` forwards requests to
    the upstream server (llama.cpp's listener, or any OpenAI-compatible one)
    with ``upstream_key`` as their bearer key. A body whose Content-Length
    is over ``max_body_bytes`` is answered 413 unread; a request without a
    Content-Length 411; when ``slots + max_waiting`` requests are in
    progress, another gets 503 with Retry-After. A body is read in full,
    within ``read_timeout`` seconds, before the request takes a place: a
    client that stalls mid-upload gets 408 and never holds a slot. With ``api_key`` set,
    requests must carry it as their bearer key (401 otherwise). With
    ``specials`` (the model's special tokens), the text of chat messages is
    escaped so that no message can open a chat role."""

    def __init__(self, host: str, port: int, *, slots: int, max_body_bytes: int = MAX_BODY_BYTES,
                 max_waiting: int = MAX_WAITING, api_key: str | None = None,
                 specials: SpecialTokens | None = None, read_timeout: float = READ_TIMEOUT):
        try:
            self._server = _FrontServer((host, port), _FrontHandler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ModelError(f"port {port} on {host} is already in use (another server, or an earlier "
                                 f"`aidsafe serve`); stop it or choose another with --port") from None
            raise ModelError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from None
        self._server.front = self
        self.max_body_bytes = int(max_body_bytes)
        self.read_timeout = float(read_timeout)
        self._capacity = threading.BoundedSemaphore(max(1, int(slots)) + max(0, int(max_waiting)))
        self._api_key = api_key
        self.specials = specials
        self._upstream: tuple[str, int] | None = None
        self._upstream_key = ""
        self._thread: threading.Thread | None = None
        self.model_name: str | None = None  # the served name; None: any `model` is forwarded
        self._model_aliases: frozenset[str] = frozenset()

    @property
    def url(self) -> str:
        """``http://HOST:PORT/v1``, the base URL for clients."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self, upstream: str, upstream_key: str = "", model_name: str | None = None,
              aliases: tuple[str, ...] = ()) -> "ServeFront":
        """Forward to ``upstream`` (``http://host:port``) from now on, in a
        background thread. With ``model_name``, a request for another model
        (not one of ``aliases`` either) is answered 404, as vLLM does."""
        self.model_name = model_name
        self._model_aliases = frozenset(n for n in (model_name, *aliases) if n)
        parts = urlsplit(upstream if "//" in upstream else f"http://{upstream}")
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._upstream_key = upstream_key
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="aidsafe-serve-front", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port (safe to call twice)."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._thread is not None:
            server.shutdown()
        server.server_close()

    def _handle(self, handler: _FrontHandler) -> None:
        if self._api_key is not None:
            given = handler.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self._api_key.encode()):
                return handler.error(401, "missing or wrong API key (Authorization: Bearer KEY)", close=True)
        body = b""
        if handler.command in ("POST", "PUT"):
            if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
                return handler.error(411, "send the body with a Content-Length, not chunked", close=True)
            try:
                length = int(handler.headers.get("Content-Length") or 0)
            except ValueError:
                return handler.error(400, "Content-Length is not a number", close=True)
            if length > self.max_body_bytes:
                # Refused from the header alone: the body is never read, let alone tokenized.
                return handler.error(413, f"request body of {length} bytes is over the limit of "
                                          f"{self.max_body_bytes} bytes", close=True)
            if length < 0:
                return handler.error(400, "Content-Length is negative", close=True)
            body = self._read_body(handler, length)
            if body is None:
                return handler.error(408, f"the request body did not arrive within {self.read_timeout:g}s",
                                     close=True)
            if not self._capacity.acquire(blocking=False):
                return handler.error(503, "every slot is busy and the queue is full; retry later",
                                     {"Retry-After": str(RETRY_AFTER)})
            try:
                if self._check_model(handler, body):
                    self._forward(handler, self._escaped(handler.path, body))
            finally:
                self._capacity.release()
            return
        if self.model_name and handler.command == "GET" and urlsplit(handler.path).path.rstrip("/") in ("/v1/models",
                                                                                                      "/models"):
            return self._models(handler)
        self._forward(handler, body)

    def _check_model(self, handler: _FrontHandler, body: bytes) -> bool:
        """False (answered) for embeddings, or a ``model`` this server does not serve."""
        path = urlsplit(handler.path).path.rstrip("/")
        if path not in _MODEL_PATHS:
            return True
        if path.endswith("/embeddings"):
            handler.error(501, EMBEDDINGS_HINT)
            return False
        if not self.model_name:
            return True
        try:
            wanted = json.loads(body or b"{}").get("model")
        except (ValueError, AttributeError):
            return True  # the model server reports a bad body in its own words
        if wanted is None or (isinstance(wanted, str) and wanted.removeprefix("openai/") in self._model_aliases):
            return True
        handler.error(404, f"The model `{wanted}` does not exist: this server serves `{self.model_name}` "
                           f"(in a recipe: model: openai/{self.model_name} with api_base: {self.url})",
                      error_type="NotFoundError")
        return False

    def _models(self, handler: _FrontHandler) -> None:
        data = json.dumps({"object": "list", "data": [{"id": self.model_name, "object": "model",
                                                        "owned_by": "aidsafe", "created": 0}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    def _read_body(self, handler: _FrontHandler, length: int) -> bytes | None:
        """The request body, read in full within ``read_timeout`` seconds in
        all (not per read: a client trickling a byte a second cannot hold
        it); None when it does not arrive in time or the client goes."""
        deadline = time.monotonic() + self.read_timeout
        chunks, left = [], length
        try:
            while left > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                handler.connection.settimeout(remaining)
                chunk = handler.rfile.read1(min(left, 65536))
                if not chunk:
                    return None
                chunks.append(chunk)
                left -= len(chunk)
        except OSError:  # socket.timeout included
            return None
        finally:
            with contextlib.suppress(OSError):
                handler.connection.settimeout(None)  # the answer may take as long as the model needs
        return b"".join(chunks)

    def _escaped(self, path: str, body: bytes) -> bytes:
        """A chat request's body with its messages' text escaped (see
        :mod:`._special`); any other body, or one that is not JSON, as sent."""
        if self.specials is None or not urlsplit(path).path.rstrip("/").endswith("/chat/completions"):
            return body
        try:
            data = json.loads(body)
        except ValueError:
            return body  # llama.cpp answers it with its own 400
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            return body
        data["messages"] = self.specials.escape_messages(data["messages"])
        return json.dumps(data).encode("ascii")  # ASCII escapes: a lone surrogate in a message passes as sent

    def _forward(self, handler: _FrontHandler, body: bytes) -> None:
        host, port = self._upstream
        headers = {"Content-Type": handler.headers.get("Content-Type", "application/json"),
                   "Accept": handler.headers.get("Accept", "*/*"), "Content-Length": str(len(body))}
        if self._upstream_key:
            headers["Authorization"] = f"Bearer {self._upstream_key}"
        connection = http.client.HTTPConnection(host, port, timeout=3600)
        try:
            connection.request(handler.command, handler.path, body=body if handler.command in ("POST", "PUT") else None,
                               headers=headers)
            response = connection.getresponse()
        except OSError as exc:
            connection.close()
            return handler.error(502, f"the model server did not answer: {exc}")
        try:
            handler.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    handler.send_header(key, value)
            length = response.getheader("Content-Length")
            if length is not None:
                handler.send_header("Content-Length", length)
                handler.end_headers()
                handler.wfile.write(response.read())
            else:
                # A streamed answer (server-sent events): relay it as it comes.
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                while chunk := response.read1(65536):
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    handler.wfile.flush()
                handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            handler.close_connection = True
        finally:
            connection.close()


def serve(
    ref: str,
    cache_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_threads: int | str | None = None,
    n_ctx: int = 4096,
    n_parallel: int = 2,
    *,
    allow_remote: bool = False,
    api_key: str | None = None,
    repeat_penalty: float = 1.1,
    seed: int = 0,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_waiting: int = MAX_WAITING,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve a local model over llama.cpp's OpenAI-compatible HTTP API.

    Several processes then share one loaded model, e.g. with
    ``dspy.LM("openai/<name>", api_base="http://127.0.0.1:8080/v1", api_key="x")``.
    Listens on loopback only unless ``allow_remote=True`` (there is no
    authentication unless ``api_key`` is given). Blocks until Ctrl-C (or
    until ``stop`` is set, for embedding); ``ready`` is set once listening.
    Note that, unlike :class:`LlamaCppEngine`, the server applies
    ``repeat_penalty`` only as the default for requests that do not set one.
    Requests pass through :class:`ServeFront`: bodies over ``max_body_bytes``
    get 413, and past ``n_parallel + max_waiting`` requests in progress 503.
    """
    if host not in _LOOPBACK and not allow_remote:
        raise ModelError(
            f"refusing to serve on {host}: the server has no authentication and would expose the model "
            "to the network; use 127.0.0.1, or pass allow_remote=True (and an api_key) on purpose"
        )
    # The port first: a port in use is reported before a model loads.
    front = ServeFront(host, port, slots=n_parallel, max_body_bytes=max_body_bytes, max_waiting=max_waiting,
                       api_key=api_key)
    try:
        model = resolve_local(ref, cache_dir)
        internal_key = secrets.token_urlsafe(32)
        threads = choose_threads(n_threads)
        params = _make_params(
            model, threads=threads, n_ctx=n_ctx, n_parallel=n_parallel, repeat_penalty=repeat_penalty,
            seed=seed, host="127.0.0.1", port=0, api_key=internal_key, http_threads=max(2, n_parallel + 1),
            prompt_ram_cache_mib=PROMPT_CACHE_MIB,
        )
        server = _start_server(params, model)
        front.specials = special_tokens(model.path)
    except BaseException:
        front.close()
        raise
    front.start(server.listening_address, internal_key, model_name=model.name, aliases=(ref, Path(str(ref)).stem))
    print(f"serving {model.name} (sha256 {model.sha256[:12]}) at {front.url} "
          f"with {n_parallel} slot(s), {max_waiting} waiting at most, {threads.describe()}; Ctrl-C to stop", flush=True)
    if ready is not None:
        ready.set()
    # SIGTERM (service managers, `kill`) should stop as cleanly as Ctrl-C.
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        while True:
            if stop is None:
                time.sleep(0.5)
            elif stop.wait(0.5):
                break
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        front.close()
        del server  # the native destructor stops the loop and joins its threads


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
