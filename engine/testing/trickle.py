"""A hostile HTTP server for tests and benchmarks: it answers ``200`` with a
long ``Content-Length``, then trickles one body byte every ``every`` seconds
(``total`` bytes, then it hangs up). An HTTP client's per-read timeout never
fires against it; only a whole-call deadline stops the call.

    with trickle_server() as (url, state):
        ...            # point a model at url; state["sent"] counts the bytes sent so far
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["trickle_server"]


@contextmanager
def trickle_server(total: int = 400, every: float = 0.05) -> Iterator[tuple[str, dict]]:
    """A loopback server that trickles its answer; yields ``(base URL ending
    in /v1, state)``, ``state["sent"]`` counting the body bytes sent (assert
    a bound on the work, not on the clock)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    state = {"sent": 0}
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            for _ in range(total):
                if stop.wait(every):
                    return
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                state["sent"] += 1

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", state
    finally:
        stop.set()
        listener.close()
