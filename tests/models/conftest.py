"""Fake weight parts for the local-model tests: small parted models, loose or
installed as real distributions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import aidsafe.models.local._weights as L


@pytest.fixture
def fake_parts(tmp_path):
    """Three small parts with distinct bytes, plus their expected hash/size."""
    d = tmp_path / "parts"
    d.mkdir()
    contents = [b"GGUF" + b"\x01" * 1000, b"\x02" * 777, b"\x03" * 5 + b"tail"]
    parts = []
    for i, data in enumerate(contents, 1):
        p = d / f"part{i:02d}.bin"
        p.write_bytes(data)
        parts.append(p)
    whole = b"".join(contents)
    return parts, hashlib.sha256(whole).hexdigest(), len(whole), whole


def _fake_parted(sha: str, size: int, n: int = 3, name: str = "fake-tiny") -> L.PartedModel:
    """A parted model in the table's shape whose parts are ``fake-tiny-part1..n==0.1.0``."""
    return L.PartedModel(
        name=name, model_name=f"{name}-q4", version="0.1.0", sha256=sha, size=size, extra="fake",
        parts=tuple((f"{name}-part{i}", f"{name.replace('-', '_')}_part{i}/data/part{i:02d}.bin")
                    for i in range(1, n + 1)),
        license="test data",
    )


def _assemble(cache, fake):
    parts, sha, size, _ = fake
    return L.assemble_parted_model(_fake_parted(sha, size), cache, parts=parts)


def _install_fake_dists(site: Path, model: L.PartedModel, contents: list[bytes], versions=None) -> None:
    """Write ``*.dist-info`` + data files into ``site`` as pip would install them."""
    for i, ((dist, rel), data) in enumerate(zip(model.parts, contents, strict=True)):
        version = (versions or {}).get(i + 1, model.version)
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


@pytest.fixture
def fake_installed(tmp_path, monkeypatch):
    """A 4-part model ``fake-tiny`` in the table, its parts installed on sys.path.

    The parts are installed in an order other than their concatenation order,
    and each carries its index, so a wrong order changes the hash."""
    contents = [b"GGUF" + bytes([i]) * (50 + 13 * i) for i in range(1, 5)]
    whole = b"".join(contents)
    model = _fake_parted(hashlib.sha256(whole).hexdigest(), len(whole), n=4)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(L.PARTED_MODELS, model.name, model)
    return model, site, contents, whole
