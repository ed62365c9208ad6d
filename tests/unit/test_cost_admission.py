"""The guarded admission/lease over a fake inner admission and a local Meter; probes (no Ray)."""

import pytest

from ainative import errors
from ainative.cost import _admission, probes
from ainative.cost import meter as meter_mod
from ainative.policy.cost import guardrails as g
from ainative.policy.pricing import Budget, IdlePolicy, PriceTable
from ainative.resources import Accelerator, Resources
from ainative.scheduling import protocol


class Clock:
    t = 1_795_000_000.0

    def __call__(self):
        return self.t


class FakeInner:
    def __init__(self, stop_after=None):
        self.admitted, self.released, self.polls, self.stop_after = [], [], 0, stop_after

    def admit(self, request, timeout_s=None):
        self.admitted.append(request.name)
        return self

    def poll(self, usage=None):
        self.polls += 1
        if self.stop_after is not None and self.polls >= self.stop_after:
            return protocol.StopRequest("preempted")
        return None

    def release(self, outcome):
        self.released.append(outcome)


def request(name="j", **kw):
    return protocol.JobRequest(name=name, kind="train", queue="q",
                               bundles=(Resources(cpus=1, accelerator=Accelerator("H100")),) * 2, **kw)


def setup(tmp_path, **kw):
    clock = Clock()
    meter = meter_mod.Meter.open(str(tmp_path / "l.sqlite"), prices=PriceTable({"H100": 4.0}),
                                 clock=clock, config=g.GuardrailConfig(lookahead_s=1.0), **kw)
    return clock, meter


def test_refusal_raises_before_the_inner_admission(tmp_path):
    _, meter = setup(tmp_path, queue_budgets={"q": Budget(usd=10)})
    inner = FakeInner()
    guarded = _admission.GuardedAdmission(meter, inner)
    with pytest.raises(errors.BudgetExceededError) as info:
        guarded.admit(request(max_runtime_s=7200))
    assert info.value.job == "j" and info.value.reservation == pytest.approx(2 * (8.0 + 2 * 0.04))
    assert inner.admitted == []


def test_lease_turns_guard_stops_into_stop_requests_and_prefers_the_inner_stop(tmp_path):
    clock, meter = setup(tmp_path)
    inner = FakeInner()
    probe = probes.ManualProbe(0.9)
    guarded = _admission.GuardedAdmission(meter, inner, probe=probe, grace_s=7,
                                          idle=IdlePolicy(window_s=60))
    lease = guarded.admit(request(budget=Budget(usd=100)))
    clock.t += 30
    assert lease.poll(protocol.Usage(bundles_in_use=2)) is None
    probe.set(0.0)
    clock.t += 1
    assert lease.poll(protocol.Usage(bundles_in_use=2)) is None          # idle from now
    clock.t += 60
    stop = lease.poll(protocol.Usage(bundles_in_use=2))
    assert (stop.reason, stop.checkpoint, stop.grace_s) == ("idle", True, 7)
    clock.t += 5
    busy = lease.poll(protocol.Usage(bundles_in_use=2, accelerator_utilization=0.8))  # job's own reading wins
    assert busy is None
    lease.release("stopped: idle")
    lease.release("stopped: idle")                                       # idempotent
    assert inner.released == ["stopped: idle"] and meter.running() == []
    second = guarded.admit(request("k"))
    inner.stop_after = inner.polls + 1
    assert second.poll().reason == "preempted"
    second.release("stopped: preempted")


def test_bad_budget_or_idle_in_request_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="budget"):
        _admission.spec_from_request(request(budget={"usd": 5}))
    with pytest.raises(errors.ConfigError, match="idle"):
        _admission.spec_from_request(request(metadata={"idle": 60}))
    spec = _admission.spec_from_request(request(metadata={"team": "ml"}))
    assert spec.gpus == {"H100": 2.0} and spec.cpus == 2.0 and spec.team == "ml"


def test_probes_without_nvml_report_unknown_not_idle():
    assert probes.NvmlProbe()() is None or 0.0 <= probes.NvmlProbe()() <= 1.0
    manual = probes.ManualProbe()
    assert manual() is None
    manual.set(0.25)
    assert manual() == 0.25


def test_budget_error_helper():
    from ainative import cost

    err = cost.budget_error(protocol.StopRequest("budget", message="spent $5 of $5"), job="j")
    assert isinstance(err, errors.BudgetExceededError) and str(err) == "spent $5 of $5" and err.job == "j"


def test_enable_validates_before_starting_anything(tmp_path):
    from ainative import cost

    with pytest.raises(errors.ConfigError, match="prices"):
        cost.enable(prices={"H100": 4}, in_actor=False)
    with pytest.raises(errors.ConfigError, match="queue_budgets"):
        cost.enable(queue_budgets={"q": 5}, in_actor=False)
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(errors.ConfigError, match="ledger path"):
        cost.enable(ledger_path=blocker / "x.sqlite", in_actor=False)
    guard = cost.enable(ledger_path=tmp_path / "l.sqlite", in_actor=False, probe=None)
    try:
        assert isinstance(protocol.admission_for("q"), _admission.GuardedAdmission)
    finally:
        guard.shutdown()
    assert isinstance(protocol.admission_for("q"), protocol.ImmediateAdmission)


def test_the_guarded_lease_passes_on_when_the_scheduler_admitted_and_released_it(tmp_path):
    # The endpoint's and the gang's lease records take these times (protocol.held_since /
    # held_until): a guarded lease that hid them put the records on the caller's clock.
    _, meter = setup(tmp_path)
    inner = FakeInner()
    inner.admitted_s = 1_795_000_010.5
    lease = _admission.GuardedAdmission(meter, inner).admit(request())
    assert protocol.held_since(lease, fallback_s=0.0) == 1_795_000_010.5
    assert protocol.held_until(lease, fallback_s=-1.0) == -1.0        # not released yet
    inner.released_s = 1_795_000_070.25
    lease.release("succeeded")
    assert protocol.held_until(lease, fallback_s=-1.0) == 1_795_000_070.25
    plain = _admission.GuardedAdmission(meter, FakeInner()).admit(request("k"))
    assert protocol.held_since(plain, fallback_s=3.0) == 3.0          # an inner lease that does not say
