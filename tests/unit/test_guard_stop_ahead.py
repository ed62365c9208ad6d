"""Live budget stops land inside the budget (within one metering period), and a queue budget with
``action="min_replicas"`` keeps an endpoint's guaranteed replicas while it stops the rest, early
enough that the guaranteed replicas' spend to their horizon fits in the budget.

The scheduler's guardrails hook is stepped once a second (the live pass) with explicit times; a
stopped job ends when its stop's grace runs out (the worst case: it never checkpoints sooner) or
``latency_s`` after the decision, whichever is first."""

from __future__ import annotations

import pytest

from ainative.policy import pricing
from ainative.policy.admission import Job
from ainative.policy.cost import guardrails as g
from ainative.policy.cost.hook import GuardrailsHook

PRICES = pricing.PriceTable({"H100": 3600.0}, cpu_core_hour_usd=0.0)     # 1 USD per GPU-second
PERIOD_S = 1.0


def hook(cap: float, action: str = "stop", lookahead_s: float = PERIOD_S,
         sink: list[g.Charge] | None = None, teardown_prior_s: float = 0.0) -> GuardrailsHook:
    rails = g.Guardrails(PRICES, queue_budgets={"q": pricing.Budget(usd=cap, action=action)},
                         config=g.GuardrailConfig(lookahead_s=lookahead_s,
                                                  teardown_prior_s=teardown_prior_s))
    return GuardrailsHook(rails, on_charge=sink.extend if sink is not None else None)


def job(job_id: str, gpus: float, start_s: float, **meta) -> Job:
    j = Job(job_id, "q", gpus, "H100", metadata=dict(meta))
    j.start_s, j.placed_type = start_s, "H100"
    return j


def run_until_stopped(h: GuardrailsHook, jobs: list[Job], t: float, latency_s: float,
                      teardown_s: float = 0.0) -> float:
    """Tick every period until a budget stop; end every stopped job after its latency (at most
    its grace) and then ``teardown_s`` more (it holds its GPUs until it is torn down). Returns
    the time the last one ended."""
    ends: dict[str, float] = {}
    while not ends:
        for job_id, stop in h.on_tick(jobs, t):
            assert stop.reason == "budget"
            ends[job_id] = t + min(latency_s, stop.grace_s) + teardown_s
        t += PERIOD_S
    for j in jobs:
        if j.job_id in ends:
            h.on_finish(j, ends[j.job_id], "stopped: budget")
    return max(ends.values())


def spent(h: GuardrailsHook) -> float:
    return h.rails.book.spent("queue:q", 0.0)[0]


@pytest.mark.parametrize("latency_s", [0.5, 3.0, 20.0])
def test_a_queue_budget_stop_overshoots_by_at_most_one_metering_period(latency_s):
    h = hook(cap=100.0)
    jobs = [job("a", 2.0, 0.0), job("b", 1.0, 0.0)]                 # 3 USD/s together
    run_until_stopped(h, jobs, 0.0, latency_s)
    assert spent(h) <= 100.0 + 3.0 * PERIOD_S + 1e-6, spent(h)


def test_the_stop_latency_seen_moves_the_next_stop_earlier():
    h = hook(cap=1000.0)
    run_until_stopped(h, [job("a", 1.0, 0.0)], 0.0, latency_s=4.0)
    assert 0.0 < h.rails.stop_latency_s <= 4.0     # what the stop took (at most its grace)
    assert h.rails.ahead_s == pytest.approx(PERIOD_S + h.rails.stop_latency_s)
    before = spent(h)
    h.rails.queue_budgets["q"] = pricing.Budget(usd=before + 20.0)      # raised by 20 USD
    t = 200.0
    later = job("b", 1.0, t)
    end = run_until_stopped(h, [later], t, latency_s=4.0)
    assert spent(h) <= before + 20.0 + 1e-6 and end - t <= 20.0


def test_the_teardown_after_the_grace_is_paid_inside_the_budget():
    # A job that never reaches a checkpoint in its grace is torn down after it, holding its GPU
    # for 2 s more. Without an expected teardown the first budget stop overruns by it...
    h = hook(cap=100.0)
    run_until_stopped(h, [job("a", 1.0, 0.0)], 0.0, latency_s=60.0, teardown_s=2.0)
    assert spent(h) > 100.0 + 1.0
    # ...with one (the live scheduler's prior) the grace leaves room for it, and later stops
    # use the teardown they saw
    h = hook(cap=100.0, teardown_prior_s=3.0)
    run_until_stopped(h, [job("a", 1.0, 0.0)], 0.0, latency_s=60.0, teardown_s=2.0)
    assert spent(h) <= 100.0 + 1e-6, spent(h)
    assert h.rails.teardown_s == pytest.approx(2.0)          # learned, replacing the prior
    before = spent(h)
    h.rails.queue_budgets["q"] = pricing.Budget(usd=before + 30.0)
    run_until_stopped(h, [job("b", 2.0, 200.0)], 200.0, latency_s=60.0, teardown_s=2.0)
    assert spent(h) <= before + 30.0 + 1e-6, spent(h) - before


def test_a_budget_stop_still_gets_a_minimum_grace():
    h = hook(cap=100.0, teardown_prior_s=30.0)        # a teardown longer than the whole ahead
    stops = []
    t = 0.0
    while not stops:
        stops = h.on_tick([job("a", 1.0, 0.0)], t)
        t += PERIOD_S
    assert stops[0][1].grace_s >= 1.0


def test_admission_needs_room_for_a_stop_to_take_effect():
    h = hook(cap=10.0, lookahead_s=PERIOD_S)
    h.rails.stopped(3.0)                      # stops have been taking 3 s
    h.rails.book.add(g.Charge(job="old", queue="q", team=None, accelerator="H100", start_s=0.0,
                              end_s=6.5, gpu_seconds=6.5, cost_usd=6.5))
    # 3.5 USD left, a 1-GPU job spends 4 USD before a stop decided now can take effect
    assert h.check_admit(job("new", 1.0, 10.0), 10.0) is not None
    assert h.check_admit(job("small", 0.5, 10.0), 10.0) is None


def endpoint_jobs(**base_meta):
    base = job("ep", 1.0, 0.0, kind="endpoint", endpoint="ep", **base_meta)
    base.preemptible = False
    extra = job("ep+1", 1.0, 0.0, kind="endpoint", endpoint="ep")
    train = job("t", 1.0, 0.0, kind="train")
    return base, extra, train


def tick_to(h: GuardrailsHook, jobs: list[Job], end_s: float, ends_at: dict[str, float] | None = None
            ) -> dict[str, float]:
    """Step the hook each period to ``end_s``; a stopped job ends a period after its stop, a job
    in ``ends_at`` ends then by itself. Returns when each job was stopped."""
    stopped: dict[str, float] = {}
    ends_at = dict(ends_at or {})
    t = 0.0
    while t <= end_s:
        running = [j for j in jobs if j.job_id not in stopped and ends_at.get(j.job_id, 1e18) > t]
        for j in jobs:
            if j.job_id not in stopped and ends_at.get(j.job_id) == t:
                h.on_finish(j, t, "succeeded")
        for job_id, _stop in h.on_tick(running, t):
            stopped[job_id] = t
            h.on_finish(next(j for j in running if j.job_id == job_id), t + PERIOD_S, "stopped: budget")
        t += PERIOD_S
    return stopped


def test_min_replicas_budget_without_a_horizon_keeps_the_base_past_the_cap_flagged_once():
    charges: list[g.Charge] = []
    h = hook(cap=50.0, action="min_replicas", sink=charges)
    base, extra, train = endpoint_jobs()
    stopped = tick_to(h, [base, extra, train], 99.0)
    assert set(stopped) == {"ep+1", "t"}          # the base keeps serving at min_replicas
    flags = [d for _, job_id, d in h.events if job_id == "ep" and d.kind == "flag"]
    assert len(flags) == 1 and "expected_duration_s" in flags[0].message
    # once the extras are gone only the base is charged: what min_replicas costs, nothing more
    gone = max(stopped.values()) + 1.0
    after = [c for c in charges if c.start_s >= gone]
    assert after and {c.job for c in after} == {"ep"}
    assert sum(c.gpu_seconds for c in after) == pytest.approx(99.0 - gone, abs=1.0)


@pytest.mark.parametrize("expected_s", [60.0, 80.0])
def test_min_replicas_budget_keeps_the_base_spend_to_its_expected_end_inside_the_cap(expected_s):
    # 100 USD; the base (1 USD/s) is to serve expected_s: the extra and the training job stop
    # early enough that it does, inside the budget; it ends by itself at expected_s
    h = hook(cap=100.0, action="min_replicas")
    base, extra, train = endpoint_jobs(expected_duration_s=expected_s)
    stopped = tick_to(h, [base, extra, train], 150.0, ends_at={"ep": expected_s})
    assert set(stopped) == {"ep+1", "t"}
    assert spent(h) <= 100.0 + 1e-6, spent(h)
    # the others used what the base did not need: within a metering period of all of it
    assert spent(h) >= 100.0 - 3.0 * PERIOD_S, spent(h)
    stop = next(d for _, job_id, d in h.events if job_id == "t" and d.kind == "stop")
    assert "kept for endpoints' min_replicas" in stop.message


def test_min_replicas_budget_stops_the_base_at_the_cap_when_its_reserve_was_overrun():
    # the base was admitted to serve 200 s on a 100 USD budget already half spent: it cannot be
    # kept to its end, so the extra stops at once and the base stops at the cap, never past it
    h = hook(cap=100.0, action="min_replicas")
    h.rails.book.add(g.Charge(job="old", queue="q", team=None, accelerator="H100", start_s=-60.0,
                              end_s=-10.0, gpu_seconds=50.0, cost_usd=50.0))
    base, extra, _ = endpoint_jobs(expected_duration_s=200.0)
    stopped = tick_to(h, [base, extra], 150.0)
    assert stopped["ep+1"] == 0.0 and "ep" in stopped
    assert spent(h) <= 100.0 + 1.0 * PERIOD_S + 1e-6, spent(h)


def test_a_periodic_min_replicas_budget_keeps_the_base_spend_to_the_period_end():
    import datetime as dt

    day_end = dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc).timestamp()
    t0 = day_end - 120.0                   # two minutes before the day's budget renews
    rails = g.Guardrails(PRICES, queue_budgets={"q": pricing.Budget(usd=200.0, period="day",
                                                                     action="min_replicas")})
    floor = g.JobSpec(name="ep", queue="q", gpus={"H100": 1.0}, floor=True)
    other = g.JobSpec(name="t", queue="q", gpus={"H100": 1.0})
    rails.start(floor, t0)
    rails.start(other, t0)
    # 120 USD of the day's 200 are kept for the base: the other job may use 80, at 2 USD/s
    # together that is 80 s, at the most 1 USD/s for 80 s to the other
    t, stop_at = t0, None
    while stop_at is None and t < day_end:
        t += 1.0
        _, decisions = rails.meter("t", t)
        rails.meter("ep", t)
        if any(d.kind == "stop" for d in decisions):
            stop_at = t
    assert stop_at is not None and stop_at - t0 == pytest.approx(80.0, abs=1.0)
    # a new job is not admitted where the day has nothing left beyond the base's reserve
    assert rails.admit(g.JobSpec(name="u", queue="q", gpus={"H100": 1.0}, max_runtime_s=10.0),
                       t).kind == "refuse"
