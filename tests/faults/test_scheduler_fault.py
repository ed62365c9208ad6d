"""The scheduler actor's process SIGKILLed (twice) while jobs are being admitted, on a cluster whose
worker nodes sit in network namespaces (``tests/faults/netns.py``).

Asserted: every job is admitted exactly once and none is lost (each of the jobs gets one lease, the
quota is never exceeded while leases are held, nothing is left queued or running), and the
spend ledger the scheduler meters into charges every job exactly the time it held its GPU: per job
one contiguous run of charges from its admission to its release, no gap and no overlap across the
restarts, and the ledger's total is the sum of those."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import ainative as ai
from ainative import scheduling
from ainative.cost import ledger as ledger_mod
from ainative.scheduling import protocol
from tests.faults import netns

pytestmark = [pytest.mark.faults, pytest.mark.slow]

H100 = {ai.Accelerator("H100").resource_name: 1.0}
GPU = ai.Resources(cpus=0.25, accelerator=ai.Accelerator("H100"))
PRICES = ai.PriceTable({"H100": 3600.0}, cpu_core_hour_usd=0.0)   # 1 USD per GPU-second
JOBS, QUOTA, HOLD_S = 6, 2, 2.0


def _actor_pid_node() -> tuple[int, str]:
    import ray

    actor = ray.get_actor(scheduling.service.ACTOR_NAME)
    return ray.get(actor.__ray_call__.remote(
        lambda self: (os.getpid(), ray.get_runtime_context().get_node_id())), timeout=30)


def _status_after_restart(old_pid: int) -> tuple[int, str]:
    """Wait until the restarted scheduler answers (a new process); returns its pid and node."""
    def answered() -> tuple[int, str] | None:
        try:
            pid, node = _actor_pid_node()
        except Exception:
            return None
        return (pid, node) if pid != old_pid else None

    return netns.wait_until("the scheduler actor back in a new process", answered, timeout_s=60,
                            interval_s=0.2)


class Jobs:
    """JOBS threads, each: admit one 1-GPU job, hold it HOLD_S while polling its lease, release."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holding: set[str] = set()
        self.peak = 0
        self.done: dict[str, dict[str, float]] = {}
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(JOBS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def admitted(self) -> int:
        with self.lock:
            return len(self.holding) + len(self.done)

    def _run(self, i: int) -> None:
        try:
            request = protocol.JobRequest(name=f"sf{i}", kind="gang", bundles=(GPU,), queue="q")
            t_submit = time.time()
            lease = protocol.admission_for("q").admit(request, timeout_s=150)
            t_admit = time.time()
            job_id = lease.job_id  # type: ignore[attr-defined]
            with self.lock:
                assert job_id not in self.holding and job_id not in self.done, job_id
                self.holding.add(job_id)
                self.peak = max(self.peak, len(self.holding))
            end = time.monotonic() + HOLD_S
            stop = threading.Event()
            while time.monotonic() < end:   # the controller's work: poll the lease about 5x a second
                assert lease.poll() is None
                stop.wait(0.2)
            with self.lock:
                self.holding.discard(job_id)
            t_release = time.time()
            lease.release("succeeded")
            with self.lock:
                self.done[job_id] = {"submit": t_submit, "admit": t_admit, "release": t_release,
                                     "released": time.time()}
        except BaseException as exc:  # reported by the test
            with self.lock:
                self.errors.append(exc)

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "job threads still running"


@pytest.mark.timeout(150)
def test_scheduler_killed_while_admitting_loses_and_duplicates_nothing(netns_cluster, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("AINATIVE_SCHEDULER_STATE_DIR", str(tmp_path / "sched"))
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "events"))
    cluster = netns_cluster
    for _ in range(2):
        cluster.add_node(cpus=1, gpus=2, resources=H100)
    queues = [ai.Queue("q", quota={"H100": QUOTA})]
    ledger_path = tmp_path / "ledger.sqlite"
    hook = ai.cost.scheduler_guardrails(queues, PRICES, ledger_path=ledger_path)
    scheduling.configure(queues, prices=PRICES, guardrails=hook, fresh=True)
    try:
        _run_and_check(Jobs(), ledger_path)
    finally:
        scheduling.shutdown()


def _run_and_check(jobs: Jobs, ledger_path: os.PathLike[str]) -> None:
    import ray

    head = ray.get_runtime_context().get_node_id()
    pid, node = _actor_pid_node()
    # on the head, where its state file and the ledger live (a worker node's partition cannot take it)
    assert node == head, (node, head)
    jobs.start()
    # 1st kill: the first wave holds the quota and the others wait in the queue
    netns.wait_until("the quota held and jobs waiting", lambda: len(jobs.holding) == QUOTA,
                     timeout_s=60)
    for wave in (1, 2):
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        pid, node = _status_after_restart(pid)
        print(f"\n[faults] scheduler SIGKILL {wave}: answering again from pid {pid} after "
              f"{time.monotonic() - t0:.2f} s; {jobs.admitted()} jobs admitted so far")
        assert node == head, (node, head)
        if wave == 1:   # 2nd kill: after at least one more admission by the restarted scheduler
            netns.wait_until("an admission after the restart",
                             lambda: jobs.admitted() > QUOTA, timeout_s=60)
    jobs.join(timeout_s=150)
    assert not jobs.errors, jobs.errors
    assert len(jobs.done) == JOBS                     # none lost, each admitted (and released) once
    assert jobs.peak <= QUOTA, jobs.peak              # never admitted past the quota
    status = scheduling.status()
    q = next(x for x in status["queues"] if x["name"] == "q")
    assert q["used"].get("H100", 0.0) == 0.0 and not status["placements"], status
    assert status["rebuilt"]["state_file"] == "read" and status["rebuilt"]["from_file"] >= 1, status
    _check_ledger(ledger_mod.Ledger(ledger_path), jobs.done)


def _check_ledger(ledger: ledger_mod.Ledger, done: dict[str, dict[str, float]]) -> None:
    everything = ledger.charges()
    assert all(c.cost_usd == 0.0 for c in everything if c.accelerator != "H100")   # CPUs are free
    charges = [c for c in everything if c.accelerator == "H100"]
    assert {c.job for c in charges} == set(done), ({c.job for c in charges}, set(done))
    expected = 0.0
    for job_id, t in done.items():
        mine = sorted((c for c in charges if c.job == job_id), key=lambda c: c.start_s)
        for a, b in zip(mine, mine[1:]):   # contiguous: no gap (lost spend), no overlap (double)
            assert abs(b.start_s - a.end_s) < 1e-6, (job_id, a, b)
        start, end = mine[0].start_s, mine[-1].end_s
        assert t["submit"] - 0.5 <= start <= t["admit"] + 0.5, (job_id, start, t)
        assert t["release"] - 0.5 <= end <= t["released"] + 0.5, (job_id, end, t)
        charged = sum(c.gpu_seconds for c in mine)
        assert abs(charged - (end - start)) < 1e-6, (job_id, charged, end - start)
        assert abs(sum(c.cost_usd for c in mine) - charged) < 1e-6   # 1 USD per GPU-second
        expected += end - start
    total = ledger.total_usd()
    print(f"[faults] ledger: {len(charges)} charges, {total:.3f} USD for {len(done)} jobs "
          f"(each ~{HOLD_S:g} GPU-s held)")
    assert abs(total - expected) < 1e-6, (total, expected)
