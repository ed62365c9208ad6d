"""Queue budgets enforced by the live scheduler actor through the ledger-backed guardrails hook:
a TrainJob is stopped when its queue's budget is spent (after a checkpoint), the next job of that
queue is held with the budget as its reason, and the ledger holds every charge."""

from __future__ import annotations

import os

import pytest

import ainative as ai
from ainative import errors, scheduling
from ainative.cost import ledger as ledger_mod
from ainative.scheduling import protocol
from tests.ray.test_guard_live import H100, PRICES, counter_fn
from tests.support import clusters

pytestmark = pytest.mark.slow
# Queue budgets, tried in turn: the first whose job gets to run steps is the one checked.
BUDGETS = (("g", 6.0), ("g-more", 18.0), ("g-most", 54.0))


@pytest.fixture
def sched(ray_local, tmp_path, monkeypatch):
    (tmp_path / "sched").mkdir()
    monkeypatch.setenv("AINATIVE_SCHEDULER_STATE_DIR", str(tmp_path / "sched"))
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "events"))
    # $0.50 a GPU-second, billed from admission: $6 (12 s) leaves steps and a checkpoint after a
    # worker start-up of 3-5 s; a busy machine stretched that to 15 s ($5 ran out before the first
    # step there), so the test goes on to a queue with 3x the budget when that happens.
    queues = [ai.Queue(name, quota={"H100": 2}, budget=ai.Budget(usd=usd, warn_at=0.5))
              for name, usd in BUDGETS]
    hook = ai.cost.scheduler_guardrails(queues, PRICES, ledger_path=tmp_path / "ledger.sqlite",
                                        config=ai.cost.GuardrailConfig(lookahead_s=0.0, stop_grace_s=20))
    scheduling.configure(queues, prices=PRICES, guardrails=hook, fresh=True)
    yield tmp_path / "ledger.sqlite"
    scheduling.shutdown()
    found = clusters.leaks()
    assert not any(found.values()), f"left behind: {found}"


def test_queue_budget_stops_the_job_and_holds_the_next(sched, tmp_path):
    with pytest.raises(errors.UnknownQueueError, match="'nope'"):
        ai.cost.scheduler_guardrails([ai.Queue("g", quota={"H100": 1})], PRICES,
                                     queue_budgets={"nope": ai.Budget(usd=1)})
    for queue, _ in BUDGETS:
        job = ai.TrainJob(counter_fn, workers=1, resources=H100, name=f"sched-capped-{queue}", queue=queue,
                          config={"steps": 10_000},
                          checkpoint=ai.CheckpointConfig(path=str(tmp_path / "ckpt")), progress=False)
        result = job.run()
        assert result.status == "stopped: budget"
        if result.history:
            break
    assert result.history, "the budget ran out before the first step three times (12, 36, 108 s of start-up)"
    assert result.checkpoint is not None and result.history[-1]["step"] % 5 == 0
    budget_usd = dict(BUDGETS)[queue]
    ledger = ledger_mod.Ledger(sched)
    spent = sum(c.cost_usd for c in ledger.charges() if c.queue == queue)
    # lookahead 0: stopped once the cap is reached, so the queue is exhausted; the overshoot is
    # the price of start-up + one poll + checkpoint time
    assert budget_usd <= spent < budget_usd + 0.5 * 10, spent
    kinds = [(e["kind"], e["reason"]) for e in ledger.events() if f"queue '{queue}'" in e["message"]]
    assert ("warn", "budget") in kinds and ("stop", "budget") in kinds
    with pytest.raises(errors.AdmissionError, match=f"budget of queue '{queue}'"):
        protocol.admission_for(queue).admit(job.request(), timeout_s=3)
    assert os.path.exists(sched)
