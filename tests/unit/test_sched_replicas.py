"""Serve replicas are attributed to their endpoint's leases in the live scheduler's reconcile:
Serve places replicas as plain actors wherever they fit, not where the scheduler planned the
lease, so the lease's placement follows the replicas; without this each misplaced replica was
counted twice (its plan, and 'external' where it really runs)."""

from __future__ import annotations

import pytest

from ainative.policy.engine import PolicyConfig
from ainative.policy.queues import Queue
from ainative.scheduling import _reconcile, service

NODES = {f"n{i}": {"GPU": 4.0, "CPU": 4.0, "accelerator_type:H100": 1.0} for i in (1, 2, 3)}
SLOT = {"GPU": 2.0, "CPU": 0.1, "accelerator_type:H100": 0.001}


@pytest.fixture(autouse=True)
def _events(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "events"))


def make(path) -> service.SchedulerService:
    return service.SchedulerService([Queue("serving", quota={"H100": 12})], PolicyConfig(), str(path),
                                    options={"nodes": NODES})


def lease(svc: service.SchedulerService, job_id: str, n: int, *, preemptible: bool) -> list[str]:
    svc.submit({"job_id": job_id, "name": job_id, "bundles": [SLOT] * n, "queue": "serving",
                "kind": "endpoint", "endpoint": "ep", "preemptible": preemptible})
    assert svc.admitted(job_id)[:2] == (True, "")
    return [p[0] for p in svc.engine.jobs[job_id].placement]


def replica(i: int, node: str, endpoint: str = "ep") -> _reconcile.Replica:
    return _reconcile.Replica(f"SERVE_REPLICA::{endpoint}#{endpoint}-model#r{i}", node, 2.0)


def snap(in_use: dict[str, float], replicas: tuple[_reconcile.Replica, ...]) -> _reconcile.Snapshot:
    return _reconcile.Snapshot(NODES, {n: in_use.get(n, 0.0) for n in NODES}, (), 0.001, replicas)


def test_replicas_move_their_leases_and_are_not_external(tmp_path):
    svc = make(tmp_path / "s.json")
    base = lease(svc, "ep", 1, preemptible=False)
    extra = lease(svc, "ep+1", 1, preemptible=True)
    planned = base + extra
    elsewhere = [n for n in NODES if n not in planned]        # Serve put both replicas on a third node
    assert len(elsewhere) >= 1
    where = elsewhere[0]
    svc._reconcile_once(snap({where: 4.0}, (replica(1, where), replica(2, where))))
    st = svc.status()
    assert st["external"]["by_node"] == {}
    assert [p[0] for p in svc.engine.jobs["ep"].placement] == [where]
    assert [p[0] for p in svc.engine.jobs["ep+1"].placement] == [where]
    assert st["free"]["H100"] == 8.0 and st["nodes"][where]["free"] == 0.0
    assert st["queues"][0]["used"]["H100"] == 4.0


def test_a_bundle_keeps_the_replica_on_its_own_node_and_waits_on_its_plan(tmp_path):
    svc = make(tmp_path / "s.json")
    base = lease(svc, "ep", 1, preemptible=False)[0]
    lease(svc, "ep+1", 1, preemptible=True)
    other = next(n for n in NODES if n != base)
    # only one replica runs so far, on the base lease's own node: the base keeps it; the extra's
    # replica is still starting, so the extra keeps its plan (counted as ours, not external)
    svc._reconcile_once(snap({base: 2.0}, (replica(1, base),)))
    assert [p[0] for p in svc.engine.jobs["ep"].placement] == [base]
    assert svc.status()["external"]["by_node"] == {}
    # the extra's replica starts somewhere else: the extra moves there, the base stays
    svc._reconcile_once(snap({base: 2.0, other: 2.0}, (replica(2, other), replica(1, base))))
    assert [p[0] for p in svc.engine.jobs["ep"].placement] == [base]
    assert [p[0] for p in svc.engine.jobs["ep+1"].placement] == [other]
    assert svc.status()["free"]["H100"] == 8.0


def test_replicas_beyond_the_leases_and_of_unknown_apps_are_external(tmp_path):
    svc = make(tmp_path / "s.json")
    base = lease(svc, "ep", 1, preemptible=False)[0]
    other = next(n for n in NODES if n != base)
    # a replica still draining after its lease went, and a Serve app ainative did not admit
    extra = (replica(1, base), replica(2, other), replica(1, other, endpoint="theirs"))
    svc._reconcile_once(snap({base: 2.0, other: 4.0}, extra))
    st = svc.status()
    assert st["external"]["by_node"] == {other: 4.0}
    assert st["free"]["H100"] == 6.0


def test_replica_endpoint_name():
    assert replica(1, "n1", endpoint="a-b").endpoint() == "a-b"


def test_an_outside_group_of_a_lease_s_shape_is_not_taken_for_it(tmp_path):
    svc = make(tmp_path / "s.json")
    base = lease(svc, "ep", 1, preemptible=False)[0]
    other = next(n for n in NODES if n != base)
    outside = _reconcile.Group("p9", "someone-else", (dict(SLOT),), (other,))   # same shape
    svc._reconcile_once(_reconcile.Snapshot(NODES, {base: 2.0, other: 2.0}, (outside,), 0.001,
                                            (replica(1, base),)))
    assert svc.status()["external"]["by_node"] == {other: 2.0}
    assert [p[0] for p in svc.engine.jobs["ep"].placement] == [base]
