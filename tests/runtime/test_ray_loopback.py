"""Issue 29, item 6: a local Ray started by `--executor ray` listens on
loopback only. The test lists the listening sockets of every process the
run's Ray started (GCS, raylet, workers, the driver's own server)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

import aidsafe
from aidsafe.testing.mock_server import MockOpenAIServer

from ..conftest import MINI

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads sockets from /proc (Linux)")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _address(hex_ip: str) -> ipaddress._BaseAddress:
    raw = bytes.fromhex(hex_ip)
    # /proc/net writes each 32-bit word in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    return address.ipv4_mapped or address if address.version == 6 else address


def listening_sockets(pids: list[int]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket the processes hold."""
    listening = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ip, port = fields[1].split(":")
                listening[fields[9]] = (_address(ip), int(port, 16))
    found = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in listening:
                    address, port = listening[target[8:-1]]
                    found.append((name, str(address), port))
        except OSError:
            continue
    return sorted(set(found))


def test_a_local_ray_listens_on_loopback_only(recipe_file, prompts, tmp_path):
    seen: list[tuple[str, str, int]] = []
    with MockOpenAIServer() as server:
        recipe = recipe_file(MINI.replace('model: "fake:test"', f'model: openai/mock-model, api_base: "{server.url}"'))
        options = aidsafe.RunOptions(cache_dir=tmp_path / "c", progress=False, executor="ray", workers=1)

        def look(record):  # while the run's Ray is up
            if not seen:
                seen.extend(s for s in listening_sockets(_descendants(os.getpid())) if s[2] != server.port)

        summary = aidsafe.run(recipe, prompts(["one"]), tmp_path / "out.jsonl", options, on_record=look)
    assert summary.statuses == {"ok": 1}
    names = {name for name, _, _ in seen}
    assert {"gcs_server", "raylet"} <= names, seen
    exposed = [s for s in seen if not ipaddress.ip_address(s[1]).is_loopback]
    assert exposed == [], f"listening beyond loopback: {exposed}"
    assert not ray.is_initialized() and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ
