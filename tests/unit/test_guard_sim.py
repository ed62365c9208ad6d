"""The guardrails hook inside the scheduling engine, driven by simulated time (no Ray)."""

import pytest

from ainative import errors
from ainative.sim import guardrails as sim
from ainative.policy.cost import guardrails as g
from ainative.policy.cost.hook import GuardrailsHook
from ainative.policy.pricing import Budget, IdlePolicy, PriceTable
from ainative.policy.queues import Queue

PRICES = PriceTable({"H100": 4.0}, cpu_core_hour_usd=0.0)
NODES = [("n0", "H100", 8.0), ("n1", "H100", 8.0)]
H = 3600.0


def queues(budget_a=None):
    return [Queue("a", quota={"H100": 8}, budget=budget_a), Queue("b", quota={"H100": 8})]


def run(jobs, guarded, budget_a=None, **kw):
    return sim.simulate(jobs, NODES, queues(budget_a), PRICES, guarded=guarded, **kw)


def test_budget_stops_exactly_at_the_cap_and_holds_later_jobs():
    jobs = [sim.SimJob("a1", "a", 0, 10 * H, 4, "H100"), sim.SimJob("a2", "a", 1 * H, 10 * H, 4, "H100"),
            sim.SimJob("a3", "a", 20 * H, 1 * H, 1, "H100"), sim.SimJob("b1", "b", 0, 2 * H, 8, "H100")]
    free = run(jobs, guarded=False)
    assert free.spend_usd["a"] == pytest.approx(4 * 4 * 20 + 4)         # 324 USD, no cap
    capped = run(jobs, guarded=True, budget_a=Budget(usd=100))
    assert capped.spend_usd["a"] == pytest.approx(100.0)                # never above, not far below
    assert capped.jobs["a1"].outcome == capped.jobs["a2"].outcome == "stopped: budget"
    assert capped.jobs["a3"].start_s is None                           # held: nothing left
    assert capped.jobs["b1"].outcome == "succeeded"
    assert sim.over_budget(capped, {"a": Budget(usd=100)}) == {}
    assert sim.over_budget(free, {"a": Budget(usd=100)}) == {"a": pytest.approx(224.0)}
    kinds = [(t, d.kind, d.reason) for t, _, d in capped.events]
    assert kinds == [(3 * H, "warn", "budget"), (3.625 * H, "stop", "budget"),   # $80, then $100
                     (3.625 * H, "stop", "budget"), (20 * H, "refuse", "budget")]


def test_crash_loop_idle_and_max_runtime_cut_waste_but_not_healthy_jobs():
    idle = IdlePolicy(window_s=1800)
    jobs = [
        sim.SimJob("ok", "a", 0, 5 * H, 4, "H100", expected_duration_s=4.5 * H, max_runtime_s=10 * H,
                   idle=idle),
        sim.SimJob("loop", "a", 0, 6 * H, 2, "H100", kind="crash_loop", outcome="failed",
                   restart_offsets_s=tuple(300.0 * k for k in range(1, 72))),
        sim.SimJob("nb", "b", 0, 8 * H, 1, "H100", kind="idle", outcome="cancelled",
                   utilization=((0.0, 0.7), (H, 0.0)), idle=idle),
        sim.SimJob("hung", "b", 0, 20 * H, 2, "H100", kind="hung", outcome="cancelled",
                   expected_duration_s=2 * H, max_runtime_s=4 * H),
    ]
    free = run(jobs, guarded=False, config=g.GuardrailConfig(crash_loop_window_s=1800))
    guarded = run(jobs, guarded=True, config=g.GuardrailConfig(crash_loop_window_s=1800))
    assert free.wasted_gpu_hours() == pytest.approx(2 * 6 + 8 + 2 * 20)
    out = {k: (v.outcome, v.end_s) for k, v in guarded.jobs.items()}
    assert out["ok"] == ("succeeded", 5 * H)
    assert out["loop"] == ("stopped: crash_loop", 900.0)       # 3rd restart at 15 min
    assert out["nb"] == ("stopped: idle", 1.5 * H)             # idle 1 h, window 30 min
    assert out["hung"] == ("stopped: max_runtime", 4 * H)
    assert guarded.wasted_gpu_hours() == pytest.approx(2 * 0.25 + 1.5 + 2 * 4)
    assert guarded.healthy_jct_s() == free.healthy_jct_s()


def test_hook_rejects_budgets_for_unknown_queues_and_bad_budgets():
    with pytest.raises(errors.UnknownQueueError, match="'nope'"):
        GuardrailsHook.from_queues(queues(), PRICES, queue_budgets={"nope": Budget(usd=1)})
    with pytest.raises(errors.ConfigError, match="budget of queue 'a'"):
        GuardrailsHook.from_queues([Queue("a", quota={"H100": 1}, budget={"usd": 5})], PRICES)


def test_hook_feeds_charges_to_a_sink():
    got = []
    hook = GuardrailsHook.from_queues(queues(Budget(usd=1000)), PRICES, on_charge=got.extend)
    from ainative.policy.engine import Engine
    from ainative.policy.gpuindex import GpuIndex
    from ainative.policy.admission import Job

    engine = Engine(queues(Budget(usd=1000)), GpuIndex(NODES), None, hook)
    engine.submit(Job("j", "a", 2, "H100"), 0.0)
    assert [j.job_id for j in engine.schedule(0.0).started] == ["j"]
    engine.schedule(1800.0)
    engine.finish("j", 3600.0)
    assert sum(c.cost_usd for c in got) == pytest.approx(8.0)
    assert hook.rails.book.spent("queue:a")[0] == pytest.approx(8.0)


def test_ledger_backed_hook_survives_pickling_and_a_restart(tmp_path):
    import pickle

    from ainative.cost import ledger as ledger_mod
    from ainative.cost.scheduler import scheduler_guardrails
    from ainative.policy.admission import Job
    from ainative.policy.engine import Engine
    from ainative.policy.gpuindex import GpuIndex

    path = tmp_path / "ledger.sqlite"
    qs = queues(Budget(usd=20))
    hook = scheduler_guardrails(qs, PRICES, ledger_path=path)
    engine = Engine(qs, GpuIndex(NODES), None, pickle.loads(pickle.dumps(hook)))   # as to an actor
    engine.submit(Job("j", "a", 2, "H100"), 0.0)
    engine.schedule(0.0)
    engine.schedule(1800.0)                                    # $4 charged and written
    assert ledger_mod.Ledger(path).total_usd() == pytest.approx(4.0)
    # the scheduler actor dies; a new one unpickles the same hook and recovers the running job
    revived_hook = pickle.loads(pickle.dumps(hook))
    revived = Engine(qs, GpuIndex(NODES), None, revived_hook)
    job = Job("j", "a", 2, "H100")
    revived.submit(job, 0.0)
    revived.schedule(0.0)
    job.start_s = 0.0                                          # recovered with its original start
    stops = revived.schedule(2 * 3600.0).stopped                # $16 total: under the $20 cap
    assert stops == [] and ledger_mod.Ledger(path).total_usd() == pytest.approx(16.0)
    revived.schedule(2.5 * 3600.0)                              # $20: the budget stop
    assert ledger_mod.Ledger(path).total_usd() == pytest.approx(20.0)
    kinds = [(e["kind"], e["reason"]) for e in ledger_mod.Ledger(path).events()]
    assert ("warn", "budget") in kinds and ("stop", "budget") in kinds
    with pytest.raises(errors.ConfigError, match="ledger path"):
        scheduler_guardrails(qs, PRICES, ledger_path=tmp_path / "ledger.sqlite" / "x" / "y")
