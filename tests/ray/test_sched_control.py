"""The control plane's admission on a live scheduler (4 logical H100s): priority preemption inside
one queue when its quota (not the cluster) blocks; admission timeouts; a reservation over a whole
budget raising at once; and the cost guard and the scheduler composing in either order."""

from __future__ import annotations

import threading
import time

import pytest

import ainative as ai
from ainative import errors, scheduling
from ainative.scheduling import protocol
from tests.support import clusters, waiting

GPU = ai.Resources(cpus=0.1, accelerator=ai.Accelerator("H100"))
NO_WINDOWS = ai.PolicyConfig(min_runtime_s=0, ping_pong_s=0, preempt_retry_s=0)


@pytest.fixture
def state(ray_local, tmp_path, monkeypatch):
    """State and ledger in tmp_path; afterwards the scheduler is stopped and nothing is left held."""
    monkeypatch.setenv("AINATIVE_SCHEDULER_STATE_DIR", str(tmp_path / "sched"))
    monkeypatch.setenv("AINATIVE_LEDGER", str(tmp_path / "ledger.sqlite"))
    (tmp_path / "sched").mkdir()
    before = clusters.held()
    yield tmp_path
    ai.cost.disable()
    scheduling.shutdown()
    found = clusters.leaks(before=before)
    assert not any(found.values()), f"left behind: {found}"


def request(name: str, queue: str, gpus: int = 2, priority: int = 0, **kw) -> protocol.JobRequest:
    return protocol.JobRequest(name=name, kind="gang", bundles=(GPU,) * gpus, queue=queue,
                               priority=priority, **kw)


def wait_for(predicate, timeout_s: float, what: str):
    return waiting.until(what, predicate, timeout_s, interval_s=0.1)


def test_priority_preemption_under_quota_pressure_then_admission_timeout(state):
    # 4 H100s, queue quota 3; the priority-0 job holds 2, so 2 GPUs stay free: only the quota blocks.
    scheduling.configure([ai.Queue("a", quota={"H100": 3})], policy=NO_WINDOWS, fresh=True)
    low = protocol.admission_for("a").admit(request("low", "a"), timeout_s=30)
    pending: list[str] = []
    got: dict = {}

    def admit_high() -> None:
        got["lease"] = protocol.admission_for("a").admit(
            request("high", "a", priority=10, on_pending=pending.append), timeout_s=60)

    thread = threading.Thread(target=admit_high)
    thread.start()
    stop = wait_for(lambda: low.poll(protocol.Usage(bundles_in_use=2)), 30, "the preemption")
    assert stop.reason == "preempted" and "high" in stop.message
    assert "lease" not in got                    # the victim still holds its GPUs until it releases
    # While the victim holds them the high job waits, so it reports why; waiting on that report
    # (not assuming it came already) matters: a busy run saw the admit thread's first poll come
    # only after the release below, admitted at once with nothing to report.
    wait_for(lambda: pending, 30, "the high job to say why it waits")
    low.release("stopped: preempted")
    thread.join(30)
    assert "lease" in got and scheduling.status()["preemptions"] == 1
    assert "over quota" in pending[0] and "short by 1" in pending[0], pending
    # A third job of the same priority must wait on the quota: it times out with the reason.
    started = time.monotonic()
    with pytest.raises(errors.AdmissionTimeoutError, match="over quota") as info:
        protocol.admission_for("a").admit(request("late", "a", priority=10), timeout_s=1.5)
    assert 1.5 <= time.monotonic() - started < 10 and info.value.timeout_s == 1.5
    assert all(p["job_id"].split("-")[0] != "late" for q in scheduling.status()["queues"]
               for p in q["pending"])            # cancelled, not left queued
    got["lease"].release("succeeded")


def test_reservation_over_the_whole_queue_budget_raises_at_once(state):
    scheduling.configure([ai.Queue("capped", quota={"H100": 4}, budget=ai.Budget(usd=1.0))],
                         prices=ai.PriceTable({"H100": 4.0}), fresh=True)
    started = time.monotonic()
    with pytest.raises(errors.BudgetExceededError) as info:    # $4 for an hour > the whole $1
        protocol.admission_for("capped").admit(request("dear", "capped", 1, max_runtime_s=3600.0))
    assert time.monotonic() - started < 10                      # at once, no timeout given
    # 1 H100 at $4/h plus 0.1 CPU core at the default $0.04/core-hour, for the hour
    assert info.value.cap == 1.0 and info.value.reservation == pytest.approx(4.0 + 0.1 * 0.04)
    assert "Budget(usd=...)" in str(info.value) and "max_runtime_s" in str(info.value)


@pytest.mark.parametrize("cost_first", [True, False])
def test_cost_guard_and_scheduler_hold_in_either_order(state, cost_first):
    def enable():
        return ai.cost.enable(prices=ai.PriceTable({"H100": 4.0}), queue_budgets={"a": ai.Budget(usd=2.0)},
                              ledger_path=state / "guard.sqlite", in_actor=False, probe=None)

    def configure():
        scheduling.configure([ai.Queue("a", quota={"H100": 2})], fresh=True)

    (enable, configure)[0 if cost_first else 1]()
    (enable, configure)[1 if cost_first else 0]()
    assert [layer.name for layer in protocol.layers()] == ["scheduler", "cost"]
    with pytest.raises(errors.BudgetExceededError):            # the cost guard: $8 > $2
        protocol.admission_for("a").admit(request("dear", "a", 1, max_runtime_s=7200.0))
    lease = protocol.admission_for("a").admit(request("one", "a", 2, max_runtime_s=60.0), timeout_s=30)
    with pytest.raises(errors.AdmissionTimeoutError, match="over quota"):   # the scheduler's quota
        protocol.admission_for("a").admit(request("two", "a", 1, max_runtime_s=60.0), timeout_s=1.5)
    lease.release("succeeded")


def test_a_lease_outliving_its_scheduler_fails_at_once(state):
    # After scheduling.shutdown() the lease's scheduler is gone for good (no name, no restart):
    # releasing must say so at once, not retry it as a restart for the call's 30 s deadline
    # (an endpoint's delete() after shutdown() took 40 s that way).
    import ray

    scheduling.configure([ai.Queue("a", quota={"H100": 2})], policy=NO_WINDOWS, fresh=True)
    lease = protocol.admission_for("a").admit(request("orphan", "a", gpus=1), timeout_s=30)
    scheduling.shutdown()
    started = time.monotonic()
    with pytest.raises(ray.exceptions.RayActorError):
        lease.release("succeeded")
    assert time.monotonic() - started < 10, "retried a scheduler that was shut down"
