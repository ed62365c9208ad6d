"""Driver-side daemon threads stop calling Ray once the driver has shut it down: Ray ends the whole
process when its core worker is used after ``ray.shutdown()`` (seen in the suite: a lease's
heartbeat outlived its cluster and took the pytest process with it)."""

from __future__ import annotations

import time

import ray

from ainative.scheduling import api


def test_a_lease_heartbeat_ends_quietly_without_ray(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)   # as after ray.shutdown()
    monkeypatch.setattr(api, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(api, "_call", lambda *a, **k: calls.append(a))
    lease = api.SchedulerLease(actor=object(), job_id="j-1", body={"job_id": "j-1", "bundles": []})
    deadline = time.monotonic() + 5
    while lease._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not lease._thread.is_alive() and calls == []
