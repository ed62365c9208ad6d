"""The driver's background threads that call Ray (lease heartbeats, gang lease polls, endpoint
capacity loops, the driver threads of submitted TrainJobs), stopped before Ray shuts down.

Ray ends the whole process when a thread uses its core worker after ``ray.shutdown()`` ("The core
worker has already been shutdown ... The process will exit"). Each loop checks
``ray.is_initialized()`` before a call, but a call already under way when another thread shuts Ray
down is not covered by that check. So every such loop registers its stop event and thread here, and
ainative's own shutdown paths (``Cluster.shutdown``, the test clusters) call :func:`stop_all`
first: it sets every stop event and waits for calls in flight to return."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Stop(Protocol):
    """What stops a registered thread: a ``threading.Event`` its loop watches, or any object whose
    ``set()`` asks the thread to finish (a TrainJob's driver thread: ``train.job.TrainHandle``)."""

    def set(self) -> None: ...


_LOCK = threading.Lock()
_LOOPS: list[tuple[Stop, threading.Thread]] = []


def register(stop: Stop, thread: threading.Thread) -> None:
    """Record a thread that ends once ``stop.set()`` is called (it is joined by stop_all)."""
    with _LOCK:
        _LOOPS[:] = [(s, t) for s, t in _LOOPS if t.is_alive() or not t.ident]
        _LOOPS.append((stop, thread))


def stop_all(timeout_s: float = 15.0) -> int:
    """Set every registered loop's stop event and wait (``timeout_s`` in all) for their threads;
    returns how many were still running when asked."""
    with _LOCK:
        loops, _LOOPS[:] = list(_LOOPS), []
    running = [(s, t) for s, t in loops if t.is_alive()]
    for stop, _ in loops:
        stop.set()
    deadline = time.monotonic() + timeout_s
    for _, thread in running:
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return len(running)
