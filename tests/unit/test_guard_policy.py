"""Pure guardrail decisions, driven with explicit timestamps (no Ray, no clock)."""

import pytest

from ainative import errors
from ainative.policy.cost import guardrails as g
from ainative.policy.pricing import Budget, IdlePolicy, PriceTable

PRICES = PriceTable({"H100": 4.0}, cpu_core_hour_usd=0.0)


def job(name="j", **kw):
    kw.setdefault("gpus", {"H100": 2})
    return g.JobSpec(name=name, queue=kw.pop("queue", "team-a"), **kw)


def test_admission_refuses_with_the_numbers():
    rails = g.Guardrails(PRICES, queue_budgets={"team-a": Budget(usd=100)})
    # 2 x H100 at $4/h for 10 h reserves $80 of the $100: admitted
    assert g.Guardrails(PRICES, queue_budgets={"team-a": Budget(usd=100)}).admit(
        job(max_runtime_s=36000), 0).kind == "admit"
    rails.start(job("old", max_runtime_s=3600), 0)
    rails.meter("old", 1800)                 # spent $4, $2 more still reserved by "old"
    decision = rails.admit(job("new", max_runtime_s=12 * 3600), 1800)
    assert decision.kind == "refuse" and decision.blocks
    d = decision.details
    assert d["spent"] == pytest.approx(4.0) and d["reserved_by_others"] == pytest.approx(4.0)
    assert d["remaining"] == pytest.approx(92.0) and d["reservation"] == pytest.approx(96.0)
    for text in ("$92.00 left of $100.00", "reserves $96.00", "max_runtime_s", "Budget(usd=...)"):
        assert text in decision.message
    assert rails.admit(job("small", max_runtime_s=11 * 3600), 1800).kind == "admit"   # $88 fits


def test_job_budget_in_gpu_hours_and_exhausted_budget_refuses_without_horizon():
    rails = g.Guardrails(PRICES)
    assert rails.admit(job(budget=Budget(gpu_hours=1), max_runtime_s=3600), 0).kind == "refuse"
    spec = job(budget=Budget(gpu_hours=1))
    assert rails.admit(spec, 0).kind == "admit"          # no horizon: admitted while budget is left
    rails.start(spec, 0)
    _, decisions = rails.meter("j", 1800)                 # 2 GPUs x 0.5 h = the whole 1 GPU-hour
    assert [(d.kind, d.reason) for d in decisions] == [("stop", "budget")]
    rails.finish("j", 1800)
    assert rails.admit(spec, 1900).kind == "refuse"
    raised = g.JobSpec(name="j", queue="team-a", gpus={"H100": 2}, budget=Budget(gpu_hours=2))
    assert rails.admit(raised, 1900).kind == "admit"      # budget raised -> resumable


def test_warn_once_then_stop_at_cap_and_charges_sum_to_spend():
    rails = g.Guardrails(PRICES, queue_budgets={"team-a": Budget(usd=8, warn_at=0.5)})
    rails.start(job(), 0)
    all_charges, kinds = [], []
    for t in range(600, 3601, 600):
        charges, decisions = rails.meter("j", t)
        all_charges += charges
        kinds += [(t, d.kind, d.reason) for d in decisions]
    assert kinds == [(1800, "warn", "budget"), (3600, "stop", "budget")]
    assert sum(c.cost_usd for c in all_charges) == pytest.approx(8.0)
    assert rails.book.spent("queue:team-a")[0] == pytest.approx(8.0)


def test_lookahead_stops_before_the_cap_is_crossed():
    cfg = g.GuardrailConfig(lookahead_s=60)
    rails = g.Guardrails(PRICES, config=cfg, queue_budgets={"team-a": Budget(usd=8)})
    rails.start(job(), 0)
    _, decisions = rails.meter("j", 3550)     # $7.89; at the next poll (60 s) it would be $8.02
    assert decisions[-1].reason == "budget" and decisions[-1].kind == "stop"
    assert rails.book.spent("job:j")[0] < 8.0


def test_max_runtime_job_and_queue_ttl():
    rails = g.Guardrails(PRICES, queue_max_runtime_s={"team-a": 100})
    rails.start(job(max_runtime_s=500), 0)
    assert rails.meter("j", 99)[1] == []
    stop = rails.meter("j", 100)[1][0]
    assert (stop.kind, stop.reason, stop.checkpoint) == ("stop", "max_runtime", True)
    assert "max_runtime_s=100" in stop.message


def test_idle_warns_then_stops_and_activity_resets():
    rails = g.Guardrails(PRICES)
    rails.start(job(idle=IdlePolicy(window_s=100, threshold=0.1)), 0)
    assert rails.meter("j", 10, utilization=0.0)[1] == []
    assert rails.meter("j", 40, utilization=0.9)[1] == []             # busy again: resets
    assert rails.meter("j", 50, utilization=0.05)[1] == []
    assert [d.kind for d in rails.meter("j", 100, utilization=0.0)[1]] == ["warn"]
    assert rails.meter("j", 120, utilization=None)[1] == []            # no reading: no change
    stop = rails.meter("j", 150, utilization=0.02)[1][0]
    assert (stop.kind, stop.reason) == ("stop", "idle") and stop.details["idle_s"] == 100
    warn_only = g.Guardrails(PRICES)
    warn_only.start(job(idle=IdlePolicy(window_s=10, action="warn")), 0)
    warn_only.meter("j", 0, utilization=0.0)
    assert [d.kind for d in warn_only.meter("j", 50, utilization=0.0)[1]] == ["warn"]


def test_crash_loop_counts_restarts_within_the_window():
    rails = g.Guardrails(PRICES, config=g.GuardrailConfig(crash_loop_restarts=3, crash_loop_window_s=60))
    rails.start(job(), 0)
    assert rails.meter("j", 10, restarts=1)[1] == []
    assert rails.meter("j", 100, restarts=2)[1] == []   # the first restart left the window
    assert rails.meter("j", 110, restarts=3)[1] == []
    stop = rails.meter("j", 120, restarts=4)[1][0]
    assert (stop.reason, stop.checkpoint) == ("crash_loop", False) and stop.details["restarts"] == 3
    burst = g.Guardrails(PRICES, config=g.GuardrailConfig(crash_loop_restarts=3))
    burst.start(job(), 0)
    assert burst.meter("j", 5, restarts=3)[1][0].reason == "crash_loop"


def test_overrun_flags_once_or_stops():
    rails = g.Guardrails(PRICES, config=g.GuardrailConfig(overrun_factor=2))
    rails.start(job(expected_duration_s=100), 0)
    assert rails.meter("j", 199)[1] == []
    assert [(d.kind, d.reason) for d in rails.meter("j", 200)[1]] == [("flag", "overrun")]
    assert rails.meter("j", 300)[1] == []
    stopper = g.Guardrails(PRICES, config=g.GuardrailConfig(overrun_factor=2, overrun_action="stop"))
    stopper.start(job(expected_duration_s=100), 0)
    assert stopper.meter("j", 250)[1][0].kind == "stop"


def test_next_deadline_is_the_earliest_guard():
    rails = g.Guardrails(PRICES, queue_budgets={"team-a": Budget(usd=4)})
    rails.start(job(max_runtime_s=7200, expected_duration_s=1000), 0)
    assert rails.next_deadline_s("j", 0) == pytest.approx(1440)          # warn_at 80% of $4 at $8/h
    assert [d.kind for d in rails.meter("j", 1440)[1]] == ["warn"]
    assert rails.next_deadline_s("j", 1440) == pytest.approx(1800)       # the cap
    rails.start(job("k", gpus={"H100": 2}), 1440)                         # same queue: twice the rate
    assert rails.next_deadline_s("j", 1440) == pytest.approx(1440 + 0.8 / 16 * 3600)
    rails.finish("k", 1500)
    assert rails.next_deadline_s("j", 1500) == pytest.approx(1500 + (4 - 3.2 - 8 * 60 / 3600) / 8 * 3600)


def test_period_budget_resets_next_period():
    day = 86400.0
    rails = g.Guardrails(PRICES, queue_budgets={"team-a": Budget(usd=8, period="day")})
    rails.start(job(), day - 3600)
    rails.meter("j", day)           # $8 yesterday
    rails.finish("j", day)
    assert rails.admit(job("k", max_runtime_s=1800), day - 1).kind == "refuse"
    assert rails.admit(job("k", max_runtime_s=1800), day + 1).kind == "admit"


def test_spend_book_straddling_charges_are_pro_rata():
    book = g.SpendBook([g.Charge("a", "q", "q", "H100", 0, 100, 100, 10.0),
                        g.Charge("a", "q", "q", "H100", 100, 110, 10, 1.0),
                        g.Charge("b", "q", "q", "H100", 50, 105, 55, 5.5)])
    assert book.spent("queue:q") == pytest.approx((16.5, 165 / 3600))
    assert book.spent("queue:q", 90)[0] == pytest.approx(1.0 + 1.0 + 1.5)
    assert book.spent("job:a", 200) == (0.0, 0.0)


def test_config_validation():
    with pytest.raises(errors.ConfigError, match="crash_loop_restarts"):
        g.GuardrailConfig(crash_loop_restarts=0)
    with pytest.raises(errors.ConfigError, match="overrun_factor"):
        g.GuardrailConfig(overrun_factor=0.5)


def test_deadlines_a_rounding_error_ahead_are_already_due():
    # a simulator that wakes at a deadline may land a float ulp short of it: the decision must
    # fire then, and the next deadline must not be that same instant again (no ulp-step loops)
    rails = g.Guardrails(PriceTable({"H100": 4.0}, cpu_core_hour_usd=0.0),
                         queue_budgets={"team-a": Budget(usd=1.0, warn_at=0.8)})
    rails.start(job(gpus={"H100": 1}), 0.0)                 # $1/900 per second: warn at t=720
    now = 720.0 - 1e-10
    assert [d.kind for d in rails.meter("j", now)[1]] == ["warn"]
    assert rails.next_deadline_s("j", now) == pytest.approx(900.0)
