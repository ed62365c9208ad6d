"""Liveness probes over UDP: notice a worker on another machine going unreachable in about a second.

Ray's GCS declares a node dead after ``health_check_failure_threshold`` RPCs in a row each time
out. Those checks share one TCP connection, so on a lossy link one lost segment delays every
check behind it (retransmission, then back-off): a threshold and timeout short enough to catch a
partition in under 2 s also declare a slow-but-alive node dead (see docs/reliability.md).

Here each probe is an independent datagram: a ``Prober`` in the controller sends one to each
watched worker every ``interval_s``, and the worker's ``Responder`` echoes it. A target is
**lost** when none of the probes sent over the last ``timeout_s`` (at least ``min_unanswered`` of
them) has been answered. On a link losing 5% of packets each way a 1.5 s timeout at 0.1 s probes
needs about 11 losses in a row (~1e-11); a partition is seen ``timeout_s`` after the last answer.

A target that never answered is never declared lost (UDP may be filtered between these machines:
then Ray's health check is all there is, and a warning says so). A responder answers only
datagrams carrying its own random key, with a datagram of the same size.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import threading
import time

logger = logging.getLogger(__name__)

MAGIC = b"AIL1"
_KEY_BYTES = 8
_SEQ = struct.Struct("!Q")


class Responder:
    """Echoes keyed probes from a daemon thread; ``port`` and ``key`` tell a prober how to reach it."""

    def __init__(self, host: str = "0.0.0.0") -> None:
        self.key = os.urandom(_KEY_BYTES)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self.port = int(self._sock.getsockname()[1])
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="ainative-liveness")
        self._thread.start()

    def _serve(self) -> None:
        prefix = MAGIC + self.key
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self._sock], [], [], 0.5)
                if not ready:
                    continue
                data, addr = self._sock.recvfrom(64)
            except OSError:
                return
            if data.startswith(prefix) and len(data) == len(prefix) + _SEQ.size:
                try:
                    self._sock.sendto(data, addr)
                except OSError as exc:   # the prober's host unreachable for now: it will ask again
                    logger.debug("liveness reply failed: %s", exc)

    def close(self) -> None:
        self._closed.set()
        self._sock.close()


class Prober:
    """Probes targets ``{name: (ip, port, key)}`` from a daemon thread; ``lost()`` lists the ones
    that stopped answering. Targets can be added and dropped while it runs."""

    def __init__(self, timeout_s: float, *, interval_s: float | None = None,
                 min_unanswered: int | None = None, warn_silent_s: float = 10.0) -> None:
        self.timeout_s = float(timeout_s)
        self.interval_s = interval_s if interval_s is not None else min(0.2, max(0.02, timeout_s / 15))
        # a starved prober sends fewer probes; it must not call that silence
        self.min_unanswered = min_unanswered if min_unanswered is not None else \
            max(3, int(0.6 * self.timeout_s / self.interval_s))
        self.warn_silent_s = warn_silent_s
        self._targets: dict[str, tuple[tuple[str, int], bytes]] = {}
        self._heard: dict[str, float] = {}        # last answer (monotonic); absent: never answered
        self._since: dict[str, float] = {}        # when the target was added
        self._unanswered: dict[str, int] = {}     # probes sent since the last answer
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._seq = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("0.0.0.0", 0))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ainative-prober")
        self._thread.start()

    def watch(self, name: str, ip: str, port: int, key: bytes) -> None:
        with self._lock:
            self._targets[name] = ((ip, int(port)), bytes(key))
            self._since[name] = time.monotonic()
            self._heard.pop(name, None)
            self._unanswered[name] = 0

    def drop(self, name: str) -> None:
        with self._lock:
            self._targets.pop(name, None)
            self._heard.pop(name, None)
            self._since.pop(name, None)
            self._unanswered.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._targets)

    def lost(self) -> list[str]:
        """Targets that answered before and none of the last ``timeout_s`` of probes since."""
        now = time.monotonic()
        with self._lock:
            return [n for n, t in self._heard.items()
                    if now - t > self.timeout_s and self._unanswered.get(n, 0) >= self.min_unanswered]

    def answering(self, name: str) -> bool:
        """True when ``name`` answered within the last ``timeout_s``."""
        with self._lock:
            t = self._heard.get(name)
        return t is not None and time.monotonic() - t <= self.timeout_s

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2.0)
        self._sock.close()

    def _run(self) -> None:
        next_send = time.monotonic()
        while not self._closed.is_set():
            now = time.monotonic()
            if now >= next_send:
                self._send_round(now)
                next_send = now + self.interval_s
            try:
                ready, _, _ = select.select([self._sock], [], [], max(0.0, next_send - now))
                if ready:
                    data, _addr = self._sock.recvfrom(64)
                    self._answer(data)
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(self.interval_s)

    def _send_round(self, now: float) -> None:
        self._seq += 1
        with self._lock:
            targets = list(self._targets.items())
        for name, (addr, key) in targets:
            try:
                self._sock.sendto(MAGIC + key + _SEQ.pack(self._seq), addr)
            except OSError:   # no route now (link down): a probe not sent is unanswered too
                pass
            silent = False
            with self._lock:
                if name in self._targets:
                    self._unanswered[name] = self._unanswered.get(name, 0) + 1
                    silent = name not in self._heard and now - self._since[name] > self.warn_silent_s
            if silent and name not in self._warned:
                self._warned.add(name)
                logger.warning("liveness probes to %s:%d get no answer after %.0f s (UDP filtered "
                               "between these machines?): only Ray's health check watches it",
                               addr[0], addr[1], self.warn_silent_s)

    def _answer(self, data: bytes) -> None:
        if not data.startswith(MAGIC):
            return
        key = data[len(MAGIC):len(MAGIC) + _KEY_BYTES]
        now = time.monotonic()
        with self._lock:
            for name, (_addr, k) in self._targets.items():
                if k == key:
                    self._heard[name] = now
                    self._unanswered[name] = 0
