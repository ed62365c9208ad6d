"""The live scheduler's view of the cluster: nodes added and removed while jobs run, GPUs held by a
placement group made outside ainative (``external``, never double-booked), a job whose driver died
released after the lease timeout, and the scheduler actor killed during a burst of submissions
(no job lost or admitted twice, ledger charges matching the GPU-seconds held)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import ray

import ainative
from ainative import errors, scheduling
from ainative.cost import ledger as ledger_mod
from ainative.scheduling import protocol
from tests.support import clusters, waiting

pytestmark = pytest.mark.slow
GPU = ainative.Resources(cpus=0.1, accelerator=ainative.Accelerator("H100"))
TINY = ainative.Resources(cpus=0.01, accelerator=ainative.Accelerator("H100", 0.05))
PRICES = ainative.PriceTable({"H100": 3600.0}, cpu_core_hour_usd=0.0)    # $1 per GPU-second
LEASE_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("sched-view")
    previous = os.environ.get("AINATIVE_SCHEDULER_STATE_DIR")
    os.environ["AINATIVE_SCHEDULER_STATE_DIR"] = str(state_dir)
    c = clusters.logical_gpu_cluster([clusters.NodeSpec(gpus=2, cpus=2), clusters.NodeSpec(gpus=2, cpus=2)])
    queues = [ainative.Queue("a", quota={"H100": 8})]
    ledger = state_dir / "ledger.sqlite"
    try:
        scheduling.configure(queues, prices=PRICES, fresh=True, lease_timeout_s=LEASE_TIMEOUT_S,
                             guardrails=ainative.cost.scheduler_guardrails(queues, PRICES,
                                                                           ledger_path=ledger))
        yield c, ledger
    finally:
        scheduling.shutdown()
        clusters.shutdown_current()
        if previous is None:
            os.environ.pop("AINATIVE_SCHEDULER_STATE_DIR", None)
        else:
            os.environ["AINATIVE_SCHEDULER_STATE_DIR"] = previous


def request(name: str, bundles: tuple, strategy: str = "PACK") -> protocol.JobRequest:
    return protocol.JobRequest(name=name, kind="gang", bundles=bundles, queue="a", strategy=strategy)


def wait_for(what, check, timeout_s: float):
    return waiting.until(what, check, timeout_s, interval_s=0.05)


def status():
    return scheduling.status()


def test_nodes_added_and_removed_mid_run_show_within_2s(cluster):
    c, _ = cluster
    lease = protocol.admission_for("a").admit(request("runner", (GPU, GPU)), timeout_s=30)
    gang = scheduling.reserve([GPU, GPU], timeout_s=30)
    wait_for("the running gang", lambda: status()["free"]["H100"] == 2.0 and
             not status()["external"]["by_type"], 5)

    node = c.add_node(clusters.NodeSpec(gpus=2, cpus=1))     # returns once Ray lists it alive
    wait_for("the added node", lambda: status()["capacity"].get("H100") == 6.0
             and node.node_id in status()["nodes"], 2.0)
    assert status()["free"]["H100"] == 4.0

    c.remove_node(node)
    c.wait_node_dead(node.node_id)
    wait_for("the removed node", lambda: status()["capacity"].get("H100") == 4.0
             and node.node_id not in status()["nodes"], 2.0)
    st = status()
    assert st["queues"][0]["used"]["H100"] == 2.0 and len(st["queues"][0]["running"]) == 1
    assert lease.poll() is None                   # the running job kept running
    gang.release()
    lease.release("succeeded")
    wait_for("everything free", lambda: status()["free"]["H100"] == 4.0, 5)


def test_external_placement_group_is_counted_and_not_double_booked(cluster):
    from ray.util import placement_group, remove_placement_group

    pg = placement_group([GPU.to_bundle()] * 2, strategy="STRICT_PACK", name="not-ainative")
    ray.get(pg.ready(), timeout=30)
    st = wait_for("the external gang", lambda: (lambda s: s if s["external"]["by_type"].get("H100") == 2.0
                                                else None)(status()), 2.0)
    assert sum(n["external"] for n in st["nodes"].values()) == 2.0
    assert st["free"]["H100"] == 2.0
    # a job needing every GPU waits: the 2 GPUs the outside gang holds are not free
    with pytest.raises(errors.AdmissionError, match="not admitted within"):
        protocol.admission_for("a").admit(request("all4", (GPU,) * 4, "SPREAD"), timeout_s=3)
    fits = protocol.admission_for("a").admit(request("two", (GPU, GPU)), timeout_s=10)
    assert status()["free"]["H100"] == 0.0
    fits.release("succeeded")
    remove_placement_group(pg)
    wait_for("the external gang gone", lambda: not status()["external"]["by_type"], 3.0)
    whole = protocol.admission_for("a").admit(request("all4", (GPU,) * 4, "SPREAD"), timeout_s=10)
    whole.release("succeeded")


def test_job_whose_driver_died_is_released_after_the_lease_timeout(cluster):
    lease = protocol.admission_for("a").admit(request("orphan", (GPU,)), timeout_s=30)
    assert lease.job_id in status()["queues"][0]["running"]
    lease._stop.set()                          # the driver is gone: no heartbeat, no poll
    wait_for("the release of the orphan", lambda: lease.job_id not in status()["queues"][0]["running"],
             LEASE_TIMEOUT_S + 5)
    assert "lost: no lease heartbeat" in scheduling.why(lease.job_id)
    assert status()["queues"][0]["used"]["H100"] == 0.0


def test_scheduler_killed_during_a_burst_loses_and_doubles_nothing(cluster):
    _, ledger_path = cluster
    leases: dict[int, object] = {}
    held: dict[str, list[float]] = {}
    failures: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            lease = protocol.admission_for("a").admit(request(f"tiny{i}", (TINY,)), timeout_s=120)
            held[lease.job_id] = [time.time()]
            leases[i] = lease
        except BaseException as exc:
            failures.append(exc)

    first = [threading.Thread(target=submit, args=(i,)) for i in range(25)]
    for t in first:
        t.start()
    for t in first:
        t.join(120)
    before = status()
    assert sorted(before["queues"][0]["running"]) == sorted(held)
    rest = [threading.Thread(target=submit, args=(i,)) for i in range(25, 50)]
    for t in rest:
        t.start()
    time.sleep(0.2)                            # some of the burst is in flight now
    ray.kill(ray.get_actor("ainative-scheduler"), no_restart=False)
    for t in rest:
        t.join(120)
    assert not failures, failures
    assert len(leases) == 50 and len(held) == 50              # every submission admitted...
    running = wait_for("all 50 running", lambda: (lambda r: r if len(r) == 50 else None)(
        status()["queues"][0]["running"]), 20)
    assert sorted(running) == sorted(held)                    # ...exactly once, none lost
    assert status()["queues"][0]["used"]["H100"] == pytest.approx(50 * 0.05)
    assert set(before["queues"][0]["running"]) <= set(running)  # the running kept running
    time.sleep(1.0)
    for lease in leases.values():
        lease.release("succeeded")
        held[lease.job_id].append(time.time())
    st = status()
    assert not st["queues"][0]["running"] and st["queues"][0]["used"]["H100"] == 0.0
    # the ledger charged each job once, over the restart: per job, charge intervals never overlap
    # and leave no gap, and they span about the time its lease held the GPUs
    charges: dict[str, list] = {}
    for charge in ledger_mod.Ledger(ledger_path).charges():
        if charge.job in held and charge.gpu_seconds > 0:
            charges.setdefault(charge.job, []).append(charge)
    assert sorted(charges) == sorted(held)
    for job_id, rows in charges.items():
        rows.sort(key=lambda c: c.start_s)
        for a, b in zip(rows, rows[1:]):
            assert b.start_s >= a.end_s - 1e-6, f"{job_id} charged twice for {b.start_s}-{a.end_s}"
            assert b.start_s - a.end_s <= 1e-3, f"{job_id} not charged for {a.end_s}-{b.start_s}"
        span = rows[-1].end_s - rows[0].start_s
        assert sum(c.gpu_seconds for c in rows) == pytest.approx(0.05 * span, rel=0.01)
        admitted, released = held[job_id]
        assert released - admitted - 1.0 <= span <= released - admitted + 30.0, (job_id, span)


def test_corrupt_state_file_is_reported_and_rebuilt_from_what_runs(cluster):
    from ainative.scheduling.service import state_path

    lease = protocol.admission_for("a").admit(request("survivor", (GPU, GPU)), timeout_s=30)
    gang = scheduling.reserve([GPU, GPU], timeout_s=30)
    path = state_path(ray.get_runtime_context().namespace)
    wait_for("the state file", lambda: lease.job_id in open(path).read(), 5)
    actor = ray.get_actor("ainative-scheduler")
    # Freeze the scheduler first: a save of its own between the torn write and the kill would
    # repair the file (it rewrites whenever the state changes, e.g. when the gang is recorded).
    pid = ray.get(actor.__ray_call__.remote(lambda _self: os.getpid()), timeout=30)
    os.kill(pid, signal.SIGSTOP)
    with open(path, "w") as fh:
        fh.write('{"queues": [], "jobs": [{"job_id": ')       # torn write
    ray.kill(actor, no_restart=False)
    st = wait_for("the job re-announced by its lease", lambda: (lambda s: s if lease.job_id in
                  s["queues"][0]["running"] else None)(_status_or_none()), 15)
    assert st["rebuilt"]["state_file"] == "corrupt" and st["rebuilt"]["announced"] >= 1
    assert any("unreadable" in w for w in st["warnings"])
    wait_for("its gang matched, not external", lambda: not status()["external"]["by_type"]
             and status()["free"]["H100"] == 2.0, 5)
    assert any(name.startswith(os.path.basename(path) + ".corrupt") for name in os.listdir(os.path.dirname(path)))
    gang.release()
    lease.release("succeeded")
    json.load(open(path))                                      # rewritten whole


def _status_or_none():
    try:
        return scheduling.status()
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
        return None
