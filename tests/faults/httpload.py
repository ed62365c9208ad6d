"""Closed-loop HTTP load for the fault suite and benchmarks/faults.py: ``threads`` clients, each
posting one request at a time to a URL on this machine until stopped."""

from __future__ import annotations

import threading
import time


class ClosedLoopLoad:
    """``rows``: (sent, answered, HTTP status; -1 for a client-side error), monotonic seconds."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url, self.stop = url, threading.Event()
        self.lock = threading.Lock()
        self.rows: list[tuple[float, float, int]] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        import requests

        with requests.Session() as s:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    code = s.post(self.url, json=i, timeout=60).status_code
                except requests.RequestException:
                    code = -1
                with self.lock:
                    self.rows.append((sent, time.monotonic(), code))

    def count(self, since: float = 0.0, ok: bool = True) -> int:
        with self.lock:
            return sum(1 for s, _, c in self.rows if s >= since and (c == 200) == ok)

    def finish(self) -> list[tuple[float, float, int]]:
        """Stop the clients (each ends its request in flight) and return every row."""
        self.stop.set()
        for t in self.threads:
            t.join(90)
        assert not any(t.is_alive() for t in self.threads), "a load client did not stop"
        return list(self.rows)
