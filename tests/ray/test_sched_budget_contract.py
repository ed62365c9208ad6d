"""The issue-7 contract: `configure([Queue(..., budget=Budget(...))], prices=PriceTable(...))` alone
enforces the queue budget through the scheduler: a job whose reserved cost exceeds the whole budget
is refused at once (BudgetExceededError), with the numbers and the knob."""

import pytest

import ainative as ai
from ainative import errors
from ainative.scheduling import protocol


def test_configure_with_prices_and_budget_enforces_the_budget(ray_local, tmp_path, monkeypatch, no_leaks):
    monkeypatch.setenv("AINATIVE_LEDGER", str(tmp_path / "ledger.sqlite"))
    ai.scheduling.configure([ai.Queue("capped", quota={"H100": 4}, budget=ai.Budget(usd=1.0))],
                            prices=ai.PriceTable({"H100": 4.0}), fresh=True)
    try:
        gpu = ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100"))
        request = protocol.JobRequest(name="too-dear", kind="gang", bundles=(gpu,), queue="capped",
                                      max_runtime_s=3600.0)
        with pytest.raises(errors.BudgetExceededError) as info:
            protocol.admission_for("capped").admit(request, timeout_s=3)
        why = str(info.value)
        assert "budget" in why.lower() and "max_runtime_s" in why, why
        cheap = protocol.JobRequest(name="cheap", kind="gang", bundles=(gpu,), queue="capped",
                                    max_runtime_s=60.0)
        lease = protocol.admission_for("capped").admit(cheap, timeout_s=10)   # $0.07 fits in $1
        lease.release("succeeded")
    finally:
        ai.scheduling.shutdown()
