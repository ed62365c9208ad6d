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
BUDGET_USD = 15.0


@pytest.fixture
def sched(ray_local, tmp_path, monkeypatch):
    (tmp_path / "sched").mkdir()
    monkeypatch.setenv("AINATIVE_SCHEDULER_STATE_DIR", str(tmp_path / "sched"))
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "events"))
    # $0.50 a GPU-second, billed from admission: $15 leaves steps and a checkpoint after a worker
    # start-up that a busy machine stretches to 15 s ($5 ran out before the first step there).
    queues = [ai.Queue("g", quota={"H100": 2}, budget=ai.Budget(usd=BUDGET_USD, warn_at=0.5))]
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
    job = ai.TrainJob(counter_fn, workers=1, resources=H100, name="sched-capped", queue="g",
                      config={"steps": 10_000},
                      checkpoint=ai.CheckpointConfig(path=str(tmp_path / "ckpt")), progress=False)
    result = job.run()
    assert result.status == "stopped: budget"
    assert result.history, "the budget ran out before the first step: start-up took > 30 s"
    assert result.checkpoint is not None and result.history[-1]["step"] % 5 == 0
    ledger = ledger_mod.Ledger(sched)
    spent = ledger.total_usd()
    # lookahead 0: stopped once the cap is reached, so the queue is exhausted; the overshoot is
    # the price of start-up + one poll + checkpoint time
    assert BUDGET_USD <= spent < BUDGET_USD + 0.5 * 10, spent
    kinds = [(e["kind"], e["reason"]) for e in ledger.events()]
    assert ("warn", "budget") in kinds and ("stop", "budget") in kinds
    with pytest.raises(errors.AdmissionError, match="budget of queue 'g'"):
        protocol.admission_for("g").admit(job.request(), timeout_s=3)
    assert os.path.exists(sched)
