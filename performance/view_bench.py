"""``aidsafe view`` on a 100k-record run: first-page latency and server memory.

Writes a synthetic scored run (``aidsafe.view._sample``, ~2.5 KB a record),
starts ``aidsafe view FILE --port 0`` as its own process, and measures:

* first page: from process start to the first page of 50 records answered,
  and the request alone (target: under 1 s, whatever the file size: the file
  is indexed by byte offsets in the background, never loaded whole);
* full index: until filters and sorting cover every record;
* a filtered, sorted page and a record page once indexed;
* server RSS after indexing (from /proc, Linux).

Usage: python performance/view_bench.py [--records 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from aidsafe.view._sample import write_sample_run


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=120) as res:
        return json.loads(res.read())


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _line(what: str, value: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("MET" if ok else "MISSED")
    print(f"{what:<44} {value:>12}  {target:<10} {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sample_run(Path(tmp) / "big.jsonl", args.records, scored=True)
        size = path.stat().st_size / 2**20
        print(f"{args.records} records, {size:.0f} MiB ({path.name})")
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "aidsafe", "view", str(path), "--port", "0"],
                                stderr=subprocess.PIPE, text=True)
        try:
            url = ""
            while not url:
                line = proc.stderr.readline()
                if not line:
                    print("the server did not start", file=sys.stderr)
                    return 1
                if "http://" in line:
                    url = line.split()[2].rstrip("/")
            before = time.perf_counter()
            page = _get(f"{url}/api/records?file=0&limit=50")
            after = time.perf_counter()
            assert len(page["rows"]) == 50
            _line("first page, request alone", f"{after - before:.3f} s", "< 1 s", after - before < 1)
            _line("first page, from process start", f"{after - start:.3f} s", "< 2 s", after - start < 2)
            t = time.perf_counter()
            page = _get(f"{url}/api/records?file=0&status=ok&sort=score.relevance&desc=1&limit=50")
            _line("full index + filtered, sorted page", f"{time.perf_counter() - t:.2f} s")
            assert page["total"] > 0 and page["complete"]
            t = time.perf_counter()
            page = _get(f"{url}/api/records?file=0&status=failed&sort=id&offset=5000&limit=50")
            _line("another filtered page (indexed)", f"{time.perf_counter() - t:.3f} s", "< 1 s",
                  time.perf_counter() - t < 1)
            t = time.perf_counter()
            _get(f"{url}/api/record?file=0&id=r{args.records - 1:06d}")
            _line("last record's page", f"{time.perf_counter() - t:.3f} s", "< 0.2 s", time.perf_counter() - t < 0.2)
            rss = _rss_mib(proc.pid)
            _line("server RSS after indexing", f"{rss:.0f} MiB", f"< {size:.0f} MiB", rss < size)
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
