"""Weights are verified by hash, not trusted on size and mtime (issue 14, item
7): a remembered hash holds only while the file's inode, size, mtime and ctime
are all unchanged, and the hash a model reports is the one its file was found
to have."""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import pytest

import aidsafe.models.local._weights as L
from aidsafe._util.errors import ModelError

from .conftest import _assemble, _fake_parted, _install_fake_dists


def _flip_keeping_mtime(path, offset=10):
    """Change one byte in place and put size and mtime back as they were."""
    st = path.stat()
    # the kernel's file clock ticks every few ms: leave the hash's tick first
    time.sleep(0.05)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def test_a_flipped_byte_with_mtime_restored_is_rebuilt(tmp_path, fake_parts):
    final = _assemble(tmp_path / "cache", fake_parts)
    _flip_keeping_mtime(final)
    assert _assemble(tmp_path / "cache", fake_parts).read_bytes() == fake_parts[3]


def test_a_flipped_byte_is_refused_when_the_parts_are_bad_too(tmp_path, fake_parts):
    parts, sha, size, _ = fake_parts
    final = _assemble(tmp_path / "cache", fake_parts)
    _flip_keeping_mtime(final)
    _flip_keeping_mtime(parts[1], offset=3)
    with pytest.raises(ModelError, match="corrupt or tampered") as exc:
        _assemble(tmp_path / "cache", fake_parts)
    assert "--force-reinstall" in str(exc.value)
    assert not final.exists()


def test_provenance_reports_the_hash_of_the_file_loaded(tmp_path, fake_installed):
    model, site, contents, whole = fake_installed
    _install_fake_dists(site, model, contents)
    first = L.resolve_local("fake-tiny", tmp_path / "cache")
    _flip_keeping_mtime(first.path)
    again = L.resolve_local("fake-tiny", tmp_path / "cache")
    assert again.sha256 == hashlib.sha256(again.path.read_bytes()).hexdigest() == model.sha256
    assert again.path.read_bytes() == whole


def test_a_verified_model_is_not_hashed_again_while_unchanged(tmp_path, fake_parts, monkeypatch):
    parts, sha, size, whole = fake_parts
    model = _fake_parted(sha, size)
    monkeypatch.setitem(L.PARTED_MODELS, model.name, model)
    monkeypatch.setattr(L, "find_parts", lambda m: parts)
    computed = []
    real = L._hash_file
    monkeypatch.setattr(L, "_hash_file", lambda p: computed.append(p) or real(p))
    resolved = L.resolve_local("fake-tiny", tmp_path / "cache")
    assert resolved.sha256 == hashlib.sha256(resolved.path.read_bytes()).hexdigest()
    # remembered: a second resolve does not read the file again
    computed.clear()
    assert L.resolve_local("fake-tiny", tmp_path / "cache") == resolved and computed == []


def test_a_replaced_file_with_the_same_size_and_mtime_is_rehashed(tmp_path, fake_parts, monkeypatch):
    final = _assemble(tmp_path / "cache", fake_parts)
    st = final.stat()
    copy = final.with_name("copy")
    shutil.copyfile(final, copy)
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    copy.rename(final)  # same bytes, size and mtime; a new inode
    hashed = []
    real = L._hash_file
    monkeypatch.setattr(L, "_hash_file", lambda p: hashed.append(p) or real(p))
    monkeypatch.setattr(L, "_concatenate_verified", lambda *a, **k: pytest.fail("good bytes: no rebuild"))
    assert _assemble(tmp_path / "cache", fake_parts) == final
    assert hashed == [final]


def test_file_sha256_memo_follows_the_bytes(tmp_path):
    """The memo for ``.gguf`` paths and the smoke model holds only while the
    file is the one hashed."""
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\x07" * 500)
    first = L.file_sha256(path, tmp_path / "cache")
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    _flip_keeping_mtime(path)
    assert L.file_sha256(path, tmp_path / "cache") == hashlib.sha256(path.read_bytes()).hexdigest() != first


def test_file_sha256_memo_is_used_while_nothing_changed(tmp_path, monkeypatch):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\x07" * 500)
    digest = L.file_sha256(path, tmp_path / "cache")
    monkeypatch.setattr(L, "_hash_file", lambda p: pytest.fail("must not hash again"))
    assert L.file_sha256(path, tmp_path / "cache") == digest


def test_a_memo_from_before_is_not_trusted(tmp_path, fake_parts, monkeypatch):
    """A sidecar written by an earlier version (size and mtime only) makes
    the file be hashed once more."""
    final = _assemble(tmp_path / "cache", fake_parts)
    st = final.stat()
    sidecar = final.with_name(final.name + ".sha256")
    sidecar.write_text(f'{{"file": "{final.name}", "sha256": "{fake_parts[1]}", "size": {st.st_size}, '
                       f'"mtime_ns": {st.st_mtime_ns}}}')
    _flip_keeping_mtime(final)
    assert _assemble(tmp_path / "cache", fake_parts).read_bytes() == fake_parts[3]
