"""A rank's reports survive a poll whose reply the controller gave up on (no Ray here)."""

from __future__ import annotations

import collections
import threading
import time
import types

from ainative.train import _worker


def _worker_with_reports(steps):
    worker = _worker.TrainWorker("j", 0, 1.0)
    session = types.SimpleNamespace(lock=threading.Lock(), outbox=collections.deque(),
                                    last_progress=time.monotonic(),
                                    context=types.SimpleNamespace(step=0))
    worker._session = session
    for step in steps:
        session.outbox.append((step, {"step": step}, None, 0.0))
    return worker, session


def test_unacknowledged_reports_are_sent_again_and_acknowledged_ones_never():
    worker, session = _worker_with_reports([1, 2])
    lost = worker.poll(ack=0)                 # the controller timed out: it never saw this reply
    assert [r[0] for r in lost["reports"]] == [1, 2]
    session.outbox.append((3, {"step": 3}, None, 0.0))
    got = worker.poll(ack=0)                  # so it acknowledges nothing new
    assert [r[0] for r in got["reports"]] == [1, 2, 3]
    session.outbox.append((4, {"step": 4}, None, 0.0))
    after = worker.poll(ack=got["seq"])
    assert [r[0] for r in after["reports"]] == [4]
    assert worker.poll(ack=after["seq"])["reports"] == []
