"""Composable admission: the ordered chain of layers (scheduler, cost guard) in either install
order; whole-budget refusals raised at submit; admission timeouts validated; pending shown."""

from __future__ import annotations

import math

import pytest

from ainative import cost, errors
from ainative.cost import _admission
from ainative.policy.cost import hook as guard_hook
from ainative.policy.admission import Job
from ainative.policy.engine import Engine, PolicyConfig
from ainative.policy.gpuindex import GpuIndex
from ainative.policy.pricing import Budget, PriceTable
from ainative.policy.queues import Queue
from ainative.resources import Accelerator, Resources
from ainative.scheduling import protocol


class FakeScheduler:
    """Stands in for the scheduler's admission: records what it was asked, never consults ``inner``."""

    def __init__(self) -> None:
        self.admitted: list[str] = []
        self.released: list[str] = []

    def layer(self) -> protocol.Layer:
        return protocol.Layer("scheduler", protocol.SCHEDULER_RANK, lambda inner, queue: self)

    def admit(self, request, timeout_s=None):
        self.admitted.append(request.name)
        return self

    def poll(self, usage=None):
        return None

    def release(self, outcome):
        self.released.append(outcome)


def request(name: str, max_runtime_s: float) -> protocol.JobRequest:
    gpu = Resources(cpus=1, accelerator=Accelerator("H100"))
    return protocol.JobRequest(name=name, kind="gang", bundles=(gpu,), queue="q",
                               max_runtime_s=max_runtime_s)


@pytest.mark.parametrize("cost_first", [True, False])
def test_cost_guard_and_scheduler_compose_in_either_order(tmp_path, cost_first):
    scheduler = FakeScheduler()
    enable = lambda: cost.enable(prices=PriceTable({"H100": 4.0}),  # noqa: E731
                                 queue_budgets={"q": Budget(usd=10.0)},
                                 ledger_path=tmp_path / "l.sqlite", in_actor=False, probe=None)
    if cost_first:
        guard = enable()
        protocol.install(scheduler.layer())
    else:
        protocol.install(scheduler.layer())
        guard = enable()
    try:
        assert [layer.name for layer in protocol.layers()] == ["scheduler", "cost"]
        admission = protocol.admission_for("q")
        assert isinstance(admission, _admission.GuardedAdmission) and admission.inner is scheduler
        with pytest.raises(errors.BudgetExceededError):       # the cost guard holds ($16 > $10)
            admission.admit(request("dear", 4 * 3600.0))
        assert scheduler.admitted == []                      # refused before it queued
        lease = admission.admit(request("cheap", 600.0))     # the scheduler holds: it was asked
        assert scheduler.admitted == ["cheap"]
        lease.release("succeeded")
        assert scheduler.released == ["succeeded"]
        guard.disable()                                      # removes only the cost layer
        assert protocol.admission_for("q") is scheduler
    finally:
        cost.disable()
        protocol.uninstall("scheduler")
    assert protocol.layers() == ()
    assert isinstance(protocol.admission_for("q"), protocol.ImmediateAdmission)


def test_installing_a_layer_again_replaces_it_and_bad_layers_are_refused():
    first, second = FakeScheduler(), FakeScheduler()
    protocol.install(first.layer())
    protocol.install(second.layer())
    try:
        assert protocol.admission_for(None) is second and len(protocol.layers()) == 1
        with pytest.raises(TypeError):
            protocol.install(lambda queue: first)               # type: ignore[arg-type]
    finally:
        assert protocol.uninstall("scheduler") is not None
    assert protocol.uninstall("scheduler") is None


def budget_engine(budget: Budget) -> Engine:
    queues = [Queue("q", quota={"H100": 4}, budget=budget)]
    hook = guard_hook.GuardrailsHook.from_queues(queues, PriceTable({"H100": 4.0}))
    return Engine(queues, GpuIndex([("n0", "H100", 4)]), PolicyConfig(), hook)


def test_reservation_over_the_whole_queue_budget_raises_at_submit_with_the_numbers():
    eng = budget_engine(Budget(usd=10.0))
    job = Job("dear", "q", 1, "H100", metadata={"max_runtime_s": 3 * 3600.0})     # $12 > $10
    with pytest.raises(errors.BudgetExceededError) as info:
        eng.submit(job, 0.0)
    err = info.value
    assert err.cap == 10.0 and err.reservation == pytest.approx(12.0) and err.unit == "usd"
    assert "$12.00" in str(err) and "$10.00" in str(err) and "max_runtime_s" in str(err)
    assert "Budget(usd=...)" in str(err) and "dear" not in eng.jobs
    eng.submit(Job("fits", "q", 1, "H100", metadata={"max_runtime_s": 3600.0}), 0.0)   # $4
    assert [j.job_id for j in eng.schedule(0.0).started] == ["fits"]


def test_reservation_over_the_jobs_own_budget_raises_and_one_that_must_wait_waits():
    eng = budget_engine(Budget(usd=10.0))
    own = Job("own", "q", 2, "H100", metadata={"max_runtime_s": 3600.0, "budget": Budget(usd=5.0)})
    with pytest.raises(errors.BudgetExceededError, match=r"whole budget of job 'own'"):
        eng.submit(own, 0.0)
    eng.submit(Job("a", "q", 1, "H100", metadata={"max_runtime_s": 2 * 3600.0}), 0.0)   # $8 reserved
    eng.schedule(0.0)
    eng.submit(Job("b", "q", 1, "H100", metadata={"max_runtime_s": 3600.0}), 1.0)       # $4 > $2 left
    eng.schedule(1.0)
    assert "b" not in eng.running and "budget of queue 'q'" in eng.jobs["b"].reason


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "10"])
def test_admission_timeout_must_be_positive_and_finite(bad):
    with pytest.raises(errors.ConfigError, match="admission_timeout_s"):
        protocol.check_admission_timeout(bad)
    assert protocol.check_admission_timeout(None) is None
    assert protocol.check_admission_timeout(2) == 2.0


def test_train_job_rejects_a_bad_admission_timeout_before_anything_runs():
    from ainative.train.job import TrainJob

    job = TrainJob(lambda ctx: None, name="t")
    for bad in (0, -5, math.nan):
        with pytest.raises(errors.ConfigError, match="admission_timeout_s"):
            job.run(admission_timeout_s=bad)
        with pytest.raises(errors.ConfigError, match="admission_timeout_s"):
            job.submit(admission_timeout_s=bad)
    assert issubclass(errors.AdmissionTimeoutError, errors.AdmissionError)


def test_pending_reason_is_printed_as_one_line(capsys):
    from ainative.train import _progress

    progress = _progress.Progress("job-a", enabled=None)        # not a terminal: no bar
    progress.pending("over quota: queue 'a' would hold 4 H100 GPUs; quota 3 (short by 1)")
    err = capsys.readouterr().err
    assert err == "[ainative] job-a pending: over quota: queue 'a' would hold 4 H100 GPUs; quota 3 " \
                  "(short by 1)\n"
    _progress.Progress("job-b", enabled=False).pending("quiet")
    assert capsys.readouterr().err == ""
